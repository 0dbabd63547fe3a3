"""orbax checkpoints: train state + data-iterator state + config, async, keep-last-N.

Restores onto whatever mesh is current: the caller passes abstract targets whose
`ShapeDtypeStruct`s carry the current shardings.
"""
import os

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


def restore(manager, step, abstract_state, data_iter=None):
  """Restores the state (onto the shardings in `abstract_state`) and, if given, the iterator."""
  available = manager.all_steps()
  if step not in available:
    raise UserError(f"no checkpoint for step {step} in {manager.directory}; available steps: {sorted(available)}")
  state = manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract_state)}))[STATE]
  if data_iter is not None:
    try:
      manager.restore(step, args=ocp.args.Composite(**{DATA: grain.checkpoint.CheckpointRestore(data_iter)}))
    except (ValueError, FileNotFoundError, KeyError) as e:
      # e.g. the process count changed: the data order restarts; the model state is intact.
      logging.warning("data iterator state of step %d not restored (%s); the data pipeline restarts "
                      "from its seed", step, e)
  return state


def restore_config(workdir, step=None):
  """The config a run saved with its checkpoint (latest, or `step`), as a ConfigDict."""
  import ml_collections
  with create_manager(workdir, read_only=True) as mgr:
    step = mgr.latest_step() if step is None else step
    if step is None:
      raise UserError(f"no checkpoint in {checkpoint_dir(workdir)}: train that run first")
    raw = mgr.restore(step, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()}))[CONFIG]
  return ml_collections.ConfigDict(raw), step


def latest_step(workdir):
  if not os.path.isdir(checkpoint_dir(workdir)):
    return None
  with create_manager(workdir, read_only=True) as mgr:
    return mgr.latest_step()
