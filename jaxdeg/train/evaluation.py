"""Evaluation of a train state over a task's eval data: masked means of its per-example metrics,
overall and per group (degradation type, test set), FIDs of its feature sets against the targets,
the image grid, and the Markdown table of the results. Used by the trainer's periodic evaluation,
`--mode=evaluate` and the evaluation CLIs; knows no model.
"""
import jax
import numpy as np

from jaxdeg.data import images as image_io
from jaxdeg.errors import UserError
from jaxdeg.metrics import fid
from jaxdeg.train.distributed import fetch_global


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
    out, mask = fetch_global((out, global_batch["mask"]))
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


def _pad_to_largest(rows):
  """Images of different sizes (full-resolution evaluation) at 1:1 scale, padded white at the
  bottom and right to the largest, so the grid shows the restorations pixel for pixel."""
  h = max(im.shape[0] for row in rows for im in row)
  w = max(im.shape[1] for row in rows for im in row)
  return [[np.pad(im, ((0, h - im.shape[0]), (0, w - im.shape[1]), (0, 0)), constant_values=1.0) for im in row]
          for row in rows]
