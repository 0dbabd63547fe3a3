"""The one generic trainer: mesh, sharded init, jitted steps, checkpoints, metrics, preemption,
and `--mode=evaluate` from a checkpoint. Evaluation itself (means, groups, FID, grid, table) is in
`evaluation.py`, `--mode=compile` in `compile_report.py`.

It never imports a model: everything model-specific comes from the task named by `config.task`.
"""
import contextlib
import json
import os
import signal
import time

import jax
import numpy as np
from absl import logging

from jaxdeg import tasks
from jaxdeg.data import images as image_io
from jaxdeg.data import waiting
from jaxdeg.data.pipeline import to_global
from jaxdeg.data.skips import write_skip_summary
from jaxdeg.errors import ConfigError, DataError, UserError
from jaxdeg.train import checkpoint as ckpt
from jaxdeg.train import defaults, lock
from jaxdeg.train import mesh as mesh_lib
from jaxdeg.train import evaluation, partitioning, writers
from jaxdeg.train.state import accumulate_steps, accumulates


class NonFiniteLossError(UserError):
  """Training diverged; its message says which checkpoint survived."""


def ensure_workdir(workdir) -> str:
  if not workdir:
    raise ConfigError("--workdir is required")
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir}: cannot write there ({e.strerror or e})") from None
  return workdir


class Setup:
  """Mesh, task, shardings and jitted functions for one config: shared by train and evaluate."""

  def __init__(self, config):
    defaults.check(config)
    self.config = config
    self.mesh = mesh_lib.make_mesh(config.mesh)
    self.task = tasks.get(config)
    divisor = mesh_lib.batch_divisor(self.mesh)
    for field in ("train.batch_size", "eval.batch_size"):
      size = config.get(field.split(".")[0]).get(field.split(".")[1])
      if size % divisor:
        raise ConfigError(f"config.{field}={size} is not divisible by the {divisor} batch shards of "
                          f"mesh {dict(self.mesh.shape)}")
    if config.eval.get("full_resolution", False) and not self.task.full_resolution_eval:
      raise self.task.crops_only_error()  # before training, not at its first evaluation
    self.batch_sharding = mesh_lib.batch_sharding(self.mesh)
    self.rng = jax.random.PRNGKey(config.seed)
    abstract_boxed = jax.eval_shape(self.task.init_state, self.rng)
    if accumulate_steps(config.train) > 1 and not accumulates(abstract_boxed.opt_state):
      raise ConfigError(f"config.train.accumulate_steps={config.train.accumulate_steps}: the {config.task} task's "
                        "optimizer does not accumulate (wrap it in jaxdeg.train.state.accumulating)")
    self.shardings = partitioning.state_shardings(abstract_boxed, self.mesh,
                                                  partitioning.rules_from_config(config))
    self.abstract_state = ckpt.abstract_with_shardings(partitioning.unbox(abstract_boxed), self.shardings)
    self.init = jax.jit(lambda rng: partitioning.unbox(self.task.init_state(rng)),
                        out_shardings=self.shardings)
    self.train_step = jax.jit(self.task.train_step, in_shardings=(self.shardings, self.batch_sharding),
                              out_shardings=(self.shardings, mesh_lib.replicated(self.mesh)),
                              donate_argnums=(0,))
    self.eval_step = jax.jit(self.task.eval_step, in_shardings=(self.shardings, self.batch_sharding))

  def global_batch(self, batch):
    return to_global(batch, self.batch_sharding)


def _load_init_from(setup, state):
  """Params, model state and EMA from another run's latest checkpoint (fine-tuning), or from a
  file the task reads (`Task.params_from_foreign_checkpoint`, e.g. released weights)."""
  src = setup.config.init_from
  if os.path.isfile(src):
    loaded = setup.task.params_from_foreign_checkpoint(src, state)
    if loaded is None:
      raise ConfigError(f"config.init_from={src}: a file; the {setup.config.task} task starts only from runs "
                        "(folders with checkpoints)")
    # host arrays the task put in → global arrays on the state's shardings (every process reads the file)
    place = lambda a, s: a if isinstance(a, jax.Array) else jax.make_array_from_callback(
        np.shape(a), s, lambda index: np.asarray(a)[index])
    return jax.tree.map(place, loaded, setup.shardings)
  step = ckpt.latest_step(src)
  if step is None:
    raise ConfigError(f"config.init_from={src}: no checkpoint found there")
  with ckpt.create_manager(src, read_only=True) as mgr:
    other = ckpt.restore(mgr, step, setup.abstract_state)
  logging.info("initialised params from %s (step %d)", src, step)
  return state.replace(params=other.params, model_state=other.model_state, ema_params=other.ema_params)


class _Preemption:
  """SIGTERM sets a flag; the loop saves a checkpoint at the current step and returns."""

  def __init__(self):
    self.requested = False

  @contextlib.contextmanager
  def installed(self):
    def handler(signum, frame):
      del frame
      logging.warning("signal %d received: saving a checkpoint and stopping", signum)
      self.requested = True
      waiting.request_stop()  # a run stuck waiting for data stops too
    waiting.clear_stop()
    try:
      previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
      yield self
      return
    try:
      yield self
    finally:
      signal.signal(signal.SIGTERM, previous)


def _mean_metrics(metric_list):
  return {k: float(np.mean([m[k] for m in metric_list])) for k in metric_list[0]}


def _check_finite(step, metrics):
  loss = float(metrics["loss"])
  if not np.isfinite(loss):
    raise NonFiniteLossError(f"loss became {loss} at step {step}; stopped")


def _check_params_finite(step, state):
  # A finite loss at step k says nothing of the params step k produced: never save NaN as "good".
  if not ckpt.finite(state.params):
    raise NonFiniteLossError(f"parameters became non-finite at step {step}; stopped")


@contextlib.contextmanager
def _finishing(mgr, workdir):
  """However the loop ends, pending async saves finish first, so the last one started is on disk;
  a divergence or unusable data says what is left."""
  try:
    yield
  except NonFiniteLossError as e:
    raise NonFiniteLossError(f"{e}; {ckpt.survivors(mgr)} (lower config.optimizer.learning_rate or check "
                             "the data)") from None
  except DataError:
    write_skip_summary(workdir)
    raise
  finally:
    mgr.wait_until_finished()


def train_and_evaluate(config, workdir, hooks=()):
  """Trains `config` in `workdir`, resuming from its latest checkpoint. Returns the final state.

  `hooks` are called as hook(step=..., batch=..., state=...) after every step (host side).
  """
  workdir = ensure_workdir(workdir)
  with lock.held(workdir):  # one run per workdir
    return _train(config, workdir, hooks)


def _train(config, workdir, hooks):
  setup = Setup(config)
  task, total = setup.task, config.train.steps
  writer = writers.create_writer(workdir, tensorboard=config.train.get("tensorboard", True))
  data_iter = task.data_iterator()
  mgr = ckpt.create_manager(workdir, keep=config.train.keep_checkpoints)
  if mgr.latest_step() is not None:
    state, start = ckpt.restore_latest(mgr, setup.abstract_state, data_iter, set_aside=True)
    logging.info("resumed from step %d in %s", start, workdir)
  else:
    start = 0
    state = setup.init(setup.rng)
    if config.init_from:
      state = _load_init_from(setup, state)
    from clu import parameter_overview
    parameter_overview.log_parameter_overview(state.params, msg=f"{config.task} params")  # with --verbose
    logging.info("%s: %s parameters", config.task, f"{parameter_overview.count_parameters(state.params):,}")
    writer.write_hparams({k: v for k, v in _flatten(config.to_dict()).items()
                          if isinstance(v, (int, float, str, bool))})
  progress = writers.create_progress(total, writer, config.train.progress_every_secs,
                                     tensorboard=config.train.get("tensorboard", True))
  preemption = _Preemption()
  history, pending = [], None
  step = start
  with preemption.installed(), _finishing(mgr, workdir):
    while step < total:
      try:
        batch = next(data_iter)
      except waiting.Interrupted as e:
        logging.warning("%s: stopped at step %d; %s", e, step, ckpt.survivors(mgr))
        break
      state, metrics = setup.train_step(state, setup.global_batch(batch))
      step += 1
      # Check the previous step's loss while this one runs: keeps dispatch asynchronous.
      if pending is not None:
        _check_finite(*pending)
        history.append(jax.device_get(pending[1]))
      pending = (step, metrics)
      for hook in hooks:
        hook(step=step, batch=batch, state=state)
      progress(step, time.monotonic())
      at_end = step == total or preemption.requested
      save_now = at_end or step % config.train.checkpoint_every == 0
      if step % config.train.log_every == 0 or save_now:
        _check_finite(*pending)
      if save_now:
        _check_params_finite(step, state)
      if step % config.train.log_every == 0 or at_end:
        history.append(jax.device_get(pending[1]))
        pending = None
        writer.write_scalars(step, {f"train/{k}": v for k, v in _mean_metrics(history).items()})
        history = []
      if config.train.eval_every and (step % config.train.eval_every == 0 or step == total):
        results, _ = evaluation.evaluate_state(setup, state, writer, step)
        _append_jsonl(os.path.join(workdir, "eval_history.jsonl"), {"step": step, **results})
      if save_now:
        ckpt.save(mgr, step, state, data_iter, config)
        write_skip_summary(workdir)
      if preemption.requested:
        logging.warning("stopped at step %d after SIGTERM; checkpoint saved", step)
        break
  mgr.wait_until_finished()
  mgr.close()
  writer.flush()
  return state


def evaluate(config, workdir, step=None):
  """Restores the latest (or `step`) checkpoint onto the current mesh and evaluates it.

  Writes metrics.json, eval_step_<N>.json, metrics.md (a table, per group too) and the image grid
  (config.eval.grid_name) to workdir.
  """
  workdir = os.path.abspath(workdir)
  if ckpt.latest_step(workdir) is None:
    raise UserError(f"no checkpoint in {ckpt.checkpoint_dir(workdir)}: train first (--mode=train)")
  setup = Setup(config)
  with ckpt.create_manager(workdir, read_only=True) as mgr:
    if step is None:  # the newest that restores (a damaged newest: one warning, then the one before)
      state, step = ckpt.restore_latest(mgr, setup.abstract_state)
    else:
      state = ckpt.restore(mgr, step, setup.abstract_state)
  writer = writers.create_writer(workdir, tensorboard=config.train.get("tensorboard", True))
  results, grid = evaluation.evaluate_state(setup, state, writer, step)
  results["step"] = int(step)
  if jax.process_index() == 0:
    for name in ("metrics.json", f"eval_step_{step}.json"):
      with open(os.path.join(workdir, name), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(workdir, "metrics.md"), "w") as f:
      f.write(evaluation.metrics_markdown(results, f"{config.task} step {step}"))
    if grid is not None:
      image_io.write_image(os.path.join(workdir, config.eval.grid_name), grid)
  writer.flush()
  logging.info("evaluated step %d: %s", step, results)
  return results


def _append_jsonl(path, record):
  if jax.process_index() == 0:
    with open(path, "a") as f:
      f.write(json.dumps(record) + "\n")


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
