"""orbax checkpoints: train state + data-iterator state + config, async, keep-last-N.

Restores onto whatever mesh is current: the caller passes abstract targets whose
`ShapeDtypeStruct`s carry the current shardings.

A checkpoint that fails to restore (a truncated array file, an empty _METADATA, a missing item) is
one line, never orbax's tracebacks: `restore` of a given step raises a UserError naming it, and
`restore_latest` falls back to the newest step that restores, with one warning naming those that
did not. Training that resumes past unrestorable steps renames them `<step>.unrestorable` (kept for
a look, out of orbax's way: it would refuse to save those steps again).
"""
import os
import time

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

from jaxdeg.errors import UserError

STATE, DATA, CONFIG = "state", "data", "config"


def checkpoint_dir(workdir):
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def create_manager(workdir, *, keep: int = 3, read_only=False) -> ocp.CheckpointManager:
  # The trainer decides when to save (orbax's interval would also save the very first step).
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=1, max_to_keep=keep, create=not read_only,
      enable_async_checkpointing=True, read_only=read_only)
  return ocp.CheckpointManager(
      checkpoint_dir(workdir), options=options, item_names=(STATE, DATA, CONFIG),
      item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: grain.checkpoint.CheckpointHandler(),
                     CONFIG: ocp.JsonCheckpointHandler()})


def save(manager, step, state, data_iter=None, config=None) -> bool:
  items = {STATE: ocp.args.StandardSave(state)}
  if data_iter is not None:
    items[DATA] = grain.checkpoint.CheckpointSave(data_iter)
  if config is not None:
    items[CONFIG] = ocp.args.JsonSave(config.to_dict() if hasattr(config, "to_dict") else config)
  return manager.save(int(step), args=ocp.args.Composite(**items), force=True)


def abstract_with_shardings(abstract_state, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)


def _short(e):
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"


def _require_step(manager, step):
  available = manager.all_steps()
  if step not in available:
    raise UserError(f"no checkpoint for step {step} in {manager.directory}; available steps: {sorted(available)}")


def _restore_item(manager, step, name, args):
  try:
    return manager.restore(step, args=ocp.args.Composite(**{name: args}))[name]
  except Exception as e:  # orbax and tensorstore raise many types for one cause: a damaged checkpoint
    raise UserError(f"checkpoint step {step} in {manager.directory} cannot be restored ({name}: {_short(e)})") \
        from None


def restore(manager, step, abstract_state, data_iter=None):
  """Restores the state (onto the shardings in `abstract_state`) and, if given, the iterator."""
  _require_step(manager, step)
  state = _restore_item(manager, step, STATE, ocp.args.StandardRestore(abstract_state))
  if data_iter is not None:
    try:
      manager.restore(step, args=ocp.args.Composite(**{DATA: grain.checkpoint.CheckpointRestore(data_iter)}))
    except (ValueError, FileNotFoundError, KeyError) as e:
      # e.g. the process count changed: the data order restarts; the model state is intact.
      logging.warning("data iterator state of step %d not restored (%s); the data pipeline restarts "
                      "from its seed", step, e)
  return state


def newest_restorable(manager, attempt, set_aside=False):
  """(attempt(step), step) for the newest step where `attempt` succeeds; the steps that failed are
  named in one warning (and with `set_aside`, renamed). UserError when none is left."""
  failed = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      result = attempt(step)
    except UserError as e:
      failed.append((step, str(e)))
      continue
    if failed:
      logging.warning("%s; using step %d instead%s", "; ".join(why for _, why in failed), step,
                      _set_aside(manager, [s for s, _ in failed]) if set_aside else "")
    return result, step
  if failed:
    raise UserError(f"no checkpoint in {manager.directory} can be restored: " + "; ".join(w for _, w in failed))
  raise UserError(f"no checkpoint in {manager.directory}: train that run first (--mode=train)")


def _set_aside(manager, steps):
  root = str(manager.directory)
  for step in steps:
    os.rename(os.path.join(root, str(step)), os.path.join(root, f"{step}.unrestorable-{int(time.time())}"))
  manager.reload()
  return f" (renamed {', '.join(f'{s}.unrestorable-*' for s in steps)})"


def restore_latest(manager, abstract_state, data_iter=None, set_aside=False):
  """(state, step) of the newest checkpoint that restores; see `newest_restorable`."""
  return newest_restorable(manager, lambda step: restore(manager, step, abstract_state, data_iter), set_aside)


def restore_config(workdir, step=None):
  """The config a run saved with its checkpoint (latest restorable, or `step`), as a ConfigDict."""
  import ml_collections
  if not os.path.isdir(checkpoint_dir(workdir)):
    raise UserError(f"no checkpoint in {checkpoint_dir(workdir)}: train that run first")
  with create_manager(workdir, read_only=True) as mgr:
    config_of = lambda s: _restore_item(mgr, s, CONFIG, ocp.args.JsonRestore())
    if step is None:
      raw, step = newest_restorable(mgr, config_of)
    else:
      _require_step(mgr, step)
      raw = config_of(step)
  if not isinstance(raw, dict):
    raise UserError(f"checkpoint step {step} in {checkpoint_dir(workdir)}: its saved config is not a JSON object")
  return ml_collections.ConfigDict(raw), step


def finite(tree) -> bool:
  """Whether every float leaf of `tree` is finite (one jitted reduction on the devices)."""
  return bool(_all_finite(tree))


@jax.jit
def _all_finite(tree):
  import jax.numpy as jnp
  leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def survivors(manager) -> str:
  """What is left to resume from, once pending saves are done: for messages that must be true."""
  manager.wait_until_finished()
  steps = manager.all_steps()
  return f"the last checkpoint is step {max(steps)}" if steps else "no checkpoint was saved (nothing to resume from)"


def latest_step(workdir):
  if not os.path.isdir(checkpoint_dir(workdir)):
    return None
  with create_manager(workdir, read_only=True) as mgr:
    return mgr.latest_step()
