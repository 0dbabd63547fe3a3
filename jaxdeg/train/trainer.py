"""The one generic trainer: mesh, sharded init, jitted steps, checkpoints, metrics, preemption.

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
from jaxdeg.data.pipeline import to_global
from jaxdeg.data.skips import write_skip_summary
from jaxdeg.errors import ConfigError, UserError
from jaxdeg.metrics import fid
from jaxdeg.train import checkpoint as ckpt
from jaxdeg.train import mesh as mesh_lib
from jaxdeg.train import partitioning, writers


class NonFiniteLossError(UserError):
  """Training diverged; the last good checkpoint is kept."""


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
      # before training, not at its first evaluation
      raise ConfigError(f"config.eval.full_resolution=True: the {config.task} task evaluates crops only; "
                        "set it to False")
    self.batch_sharding = mesh_lib.batch_sharding(self.mesh)
    self.rng = jax.random.PRNGKey(config.seed)
    abstract_boxed = jax.eval_shape(self.task.init_state, self.rng)
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
    raise NonFiniteLossError(
        f"loss became {loss} at step {step}; stopped. The last good checkpoint is kept "
        "(lower config.optimizer.learning_rate or check the data).")


def train_and_evaluate(config, workdir, hooks=()):
  """Trains `config` in `workdir`, resuming from its latest checkpoint. Returns the final state.

  `hooks` are called as hook(step=..., batch=..., state=...) after every step (host side).
  """
  workdir = ensure_workdir(workdir)
  setup = Setup(config)
  task, total = setup.task, config.train.steps
  writer = writers.create_writer(workdir, tensorboard=config.train.get("tensorboard", True))
  data_iter = task.data_iterator()
  mgr = ckpt.create_manager(workdir, keep=config.train.keep_checkpoints)
  start = mgr.latest_step()
  if start is not None:
    state = ckpt.restore(mgr, start, setup.abstract_state, data_iter)
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
  with preemption.installed():
    while step < total:
      batch = next(data_iter)
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
      if step % config.train.log_every == 0 or at_end:
        history.append(jax.device_get(pending[1]))
        pending = None
        writer.write_scalars(step, {f"train/{k}": v for k, v in _mean_metrics(history).items()})
        history = []
      if config.train.eval_every and (step % config.train.eval_every == 0 or step == total):
        results, _ = evaluate_state(setup, state, writer, step)
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


def evaluate_state(setup, state, writer, step):
  """Masked means of the task's per-example metrics over its eval data (overall, and per group when
  the eval step returns 'groups', e.g. per degradation type or test set), and the image grid of
  the first examples (or None). A task whose `eval_features(images)` returns feature sets
  (name -> (B, D), one of them 'target') gets `fid_<name>`: the FID of each set against the target
  set, overall and per group.

  With `config.eval.full_resolution` the task evaluates each image at its own size
  (`task.eval_full_resolution`) instead of batched crops; the same means, groups and outputs.
  """
  sums, count, grid_rows = {}, 0.0, []
  group_sums, group_counts = {}, {}
  fids = {}  # () or (field, group id) -> {feature set: FidAccumulator against the 'target' set}
  rows = setup.config.eval.grid_rows
  outputs = (_full_resolution_outputs(setup, state, rows) if setup.config.eval.get("full_resolution", False)
             else _batched_outputs(setup, state))
  for out, mask in outputs:
    for k, v in out["metrics"].items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v) * mask))
    count += float(mask.sum())
    for field, ids in out.get("groups", {}).items():
      ids = np.asarray(ids)
      for gid in np.unique(ids[mask > 0]):
        sel = (ids == gid) * mask
        key = (field, int(gid))
        group_counts[key] = group_counts.get(key, 0.0) + float(sel.sum())
        for k, v in out["metrics"].items():
          group_sums[key + (k,)] = group_sums.get(key + (k,), 0.0) + float(np.sum(np.asarray(v) * sel))
    if out.get("features"):
      _add_features(fids, out["features"], mask, out.get("groups", {}))
    if out.get("images") and len(grid_rows) < rows:
      images = out["images"]
      grid_rows += [[np.asarray(images[k][i]) for k in images] for i in range(len(mask))][:rows - len(grid_rows)]
  if count == 0:
    raise UserError("evaluation data is empty")
  results = {k: v / count for k, v in sums.items()}
  results.update(_fid_results(fids.get((), {})))
  results["num_examples"] = int(count)
  scalars = {f"eval/{k}": v for k, v in results.items()}
  names = setup.task.group_names()
  for (field, gid), n in sorted(group_counts.items()):
    label = _group_label(names, field, gid)
    entry = {k: group_sums[(field, gid, k)] / n for k in sums}
    entry.update(_fid_results(fids.get((field, gid), {})))
    entry["num_examples"] = int(n)
    results.setdefault(f"by_{field}", {})[label] = entry
    scalars.update({f"eval/{k}/{field}/{label}": v for k, v in entry.items()})
  writer.write_scalars(step, scalars)
  grid = None
  if grid_rows:
    grid = image_io.make_grid(_pad_to_largest(grid_rows))
    writer.write_images(step, {"eval/grid": grid[None]})
  return results, grid


def _with_features(task, out):
  """`out` plus the task's per-example feature sets of its eval images (e.g. FID's Inception
  features), when its `eval_features` returns some."""
  features = task.eval_features(out["images"]) if out.get("images") else None
  return dict(out, features=features) if features else out


def _add_features(fids, features, mask, groups):
  """Adds the valid rows of each feature set (e.g. Inception features of inputs and outputs) to FID
  statistics against the 'target' set's rows: overall and per group."""
  valid = mask > 0
  selections = [((), valid)]
  for field, ids in groups.items():
    ids = np.asarray(ids)
    selections += [((field, int(g)), valid & (ids == g)) for g in np.unique(ids[valid])]
  target = np.asarray(features["target"])
  for key, sel in selections:
    for name, rows in features.items():
      if name != "target":
        fids.setdefault(key, {}).setdefault(name, fid.FidAccumulator()).add(target[sel], np.asarray(rows)[sel])


def _fid_results(accumulators):
  """{'fid_<set>': FID} for the sets with at least 2 rows on each side (a covariance needs 2)."""
  return {f"fid_{name}": acc.result() for name, acc in accumulators.items()
          if min(acc.real.count, acc.fake.count) >= 2}


def _batched_outputs(setup, state):
  """(eval step output on the host, mask) per batch; the grid shows the first batch's images."""
  for i, batch in enumerate(setup.task.eval_data()):
    global_batch = setup.global_batch(batch)
    out = _with_features(setup.task, setup.eval_step(state, global_batch))
    if i:
      out = {k: v for k, v in out.items() if k != "images"}
    out, mask = _fetch((out, global_batch["mask"]))
    yield out, np.asarray(mask)


def _full_resolution_outputs(setup, state, rows):
  """(output, mask of ones) per image at full resolution; every process evaluates every image, so
  nothing is gathered across processes."""
  for out in setup.task.eval_full_resolution(state):
    out = _with_features(setup.task, out)
    if rows <= 0:  # full-size images leave the device only for the grid
      out = {k: v for k, v in out.items() if k != "images"}
    rows -= 1
    yield jax.device_get(out), np.ones(1, np.float32)


def _group_label(names, field, gid):
  labels = names.get(field, ())
  return labels[gid] if 0 <= gid < len(labels) else f"{field}_{gid}"


def metrics_markdown(results, title=""):
  """A Markdown table: one row for everything, then one per group (type, test set, ...)."""
  metrics = [k for k, v in results.items() if isinstance(v, float)]
  lines = [f"## {title}", ""] if title else []
  lines += ["| group | " + " | ".join(metrics) + " | examples |", "|---" * (len(metrics) + 2) + "|"]

  def row(label, entry):
    return f"| {label} | " + " | ".join(f"{entry[k]:.4f}" for k in metrics) + f" | {entry['num_examples']} |"
  lines.append(row("all", results))
  for field in sorted(k for k in results if k.startswith("by_")):
    for label, entry in results[field].items():
      lines.append(row(f"{field[3:]}: {label}", entry))
  return "\n".join(lines) + "\n"


def _fetch(tree):
  """Device arrays -> host numpy; across processes, every process gets the global values."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)


def _pad_to_largest(rows):
  """Images of different sizes (full-resolution evaluation) at 1:1 scale, padded white at the
  bottom and right to the largest, so the grid shows the restorations pixel for pixel."""
  h = max(im.shape[0] for row in rows for im in row)
  w = max(im.shape[1] for row in rows for im in row)
  return [[np.pad(im, ((0, h - im.shape[0]), (0, w - im.shape[1]), (0, 0)), constant_values=1.0) for im in row]
          for row in rows]


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
    step = mgr.latest_step() if step is None else step
    state = ckpt.restore(mgr, step, setup.abstract_state)
  writer = writers.create_writer(workdir, tensorboard=config.train.get("tensorboard", True))
  results, grid = evaluate_state(setup, state, writer, step)
  results["step"] = int(step)
  if jax.process_index() == 0:
    for name in ("metrics.json", f"eval_step_{step}.json"):
      with open(os.path.join(workdir, name), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(workdir, "metrics.md"), "w") as f:
      f.write(metrics_markdown(results, f"{config.task} step {step}"))
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


def compile_report(config, workdir=None):
  """Lowers and compiles the train step for the configured mesh without running it.

  Reports per-device memory (arguments, outputs, temporaries, code) and FLOPs per step, so a
  config can be sized before renting accelerators. Written to workdir/compile_report.json.
  """
  setup = Setup(config)
  local = next(iter(setup.task.train_data()))
  batch = {k: jax.ShapeDtypeStruct((v.shape[0] * jax.process_count(),) + v.shape[1:], v.dtype,
                                   sharding=setup.batch_sharding) for k, v in local.items()}
  t0 = time.monotonic()
  compiled = setup.train_step.lower(setup.abstract_state, batch).compile()
  report = {"mesh": dict(setup.mesh.shape), "devices": jax.device_count(),
            "device_kind": jax.devices()[0].device_kind, "compile_seconds": time.monotonic() - t0,
            "global_batch": {k: list(v.shape) for k, v in batch.items()}}
  mem = compiled.memory_analysis()
  if mem is not None:
    for field in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                  "generated_code_size_in_bytes", "alias_size_in_bytes"):
      report[f"per_device_{field.replace('_in_bytes', '_bytes')}"] = int(getattr(mem, field, 0))
    report["per_device_peak_estimate_bytes"] = (report["per_device_argument_size_bytes"]
                                                + report["per_device_output_size_bytes"]
                                                + report["per_device_temp_size_bytes"]
                                                - report["per_device_alias_size_bytes"])
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  if cost:
    report["per_device_flops_per_step"] = float(cost.get("flops", 0.0))
    report["per_device_bytes_accessed_per_step"] = float(cost.get("bytes accessed", 0.0))
  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract_state.params))
  report["parameters"] = params
  for k, v in report.items():
    logging.info("compile: %s = %s", k, f"{v / 2**20:.1f} MiB" if k.endswith("_bytes") else v)
  if workdir and jax.process_index() == 0:
    with open(os.path.join(ensure_workdir(workdir), "compile_report.json"), "w") as f:
      json.dump(report, f, indent=1)
  return report
