"""Grain statistics of a film-grain `cdd` evaluation: the second table of `jaxdeg.cdd_eval`.

For every eval example the true grain is truth − content (the target's degraded image minus its
clean image); each method puts grain on the same content and is compared with it by
`jaxdeg.metrics.grain_stats` (σ-vs-luma curve error, power-spectrum distance, histogram JSD; per
Y, Cb, Cr), then the per-example values are averaged. Rows:
- transfer / reproduction: the model, exactly as in `CddTask.eval_step` (same noise key);
- clean: no grain at all (curve error = the true σ, relative 1; spectrum distance infinite);
- residual paste: content + the reference's high frequencies (as in the first table);
- best-fit AV1 table: `fit_film_grain` on the reference pair (reference, its clean image),
  synthesised by `film_grain` on the content with seed AV1_SEED. The reference's clean image is
  the partner example's clean image (CddTask.eval_pairs: the previous valid example, the first
  taking the last), which holds for procedural and paired evaluation alike.
Each fitted table is a new static parameter set for the synthesis, so it costs one compilation
(about a second on CPU) per example.

Whole frames (`frame_results`, `python -m jaxdeg.cdd_grain_eval --weights latest.pt --pairs DIR`):
the same rows at full resolution on decoder pairs, the model made in tiles if asked (`--tile`), from
a run or an official checkpoint.
"""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.degrade.film_grain import film_grain
from jaxdeg.degrade.film_grain_fit import fit_film_grain
from jaxdeg.errors import UserError
from jaxdeg.metrics import grain_stats
from jaxdeg.tasks.cdd_ops import rbg_key, residual_paste
from jaxdeg.train.distributed import fetch_global

AV1_SEED = 7
ROWS = (("transfer", "transfer (embedding of another image, same grain)"),
        ("reproduction", "reproduction (y's own embedding)"),
        ("clean", "baseline: clean image (no grain)"),
        ("residual_paste", "baseline: residual paste"),
        ("av1_fit", "baseline: best-fit AV1 grain table"))
COLUMNS = (("curve_error", "σ-vs-luma error", "{:.4f}"), ("curve_error_rel", "relative", "{:.1%}"),
           ("spectrum_distance", "spectrum distance", "{:.3f}"), ("jsd", "histogram JSD", "{:.4f}"))
# a reference that is not grain on the partner's clean image differs from it by far more than this
_MAX_REFERENCE_GRAIN = 0.1


def partner_index(mask):
  """The example whose degradation each reference carries, as CddTask.eval_pairs pairs them."""
  n_valid = jnp.maximum(jnp.sum(mask > 0).astype(jnp.int32), 1)
  idx = jnp.arange(mask.shape[0])
  return jnp.where(idx > 0, idx - 1, n_valid - 1)


def make_images_fn(task):
  """Jitted (state, batch) -> the eval images every row needs, in [0, 1]."""
  def images(state, batch):
    x, y, reference = task.eval_pairs(batch)
    variables = task.variables(state)
    noise = rbg_key(jax.random.PRNGKey(task.config.seed + 2))  # CddTask.eval_step's noise
    emb = task.embed(variables, jnp.concatenate([y, reference]))
    made = jnp.clip(task.apply(variables, jnp.concatenate([x, x]), emb, noise), 0.0, 1.0)
    reproduction, transfer = jnp.split(made, 2, axis=0)
    paste = residual_paste(x, reference, task.config.eval.paste_sigma)
    return {"content": x, "truth": y, "reference": reference,
            "reference_clean": x[partner_index(batch["mask"])], "reproduction": reproduction,
            "transfer": transfer, "residual_paste": paste, "mask": batch["mask"]}
  return jax.jit(images)


def av1_fit_baseline(content, reference_clean, reference):
  """The content with the AV1 grain table fitted on (reference_clean, reference), as numpy."""
  params = fit_film_grain(reference_clean, reference, random_seed=AV1_SEED)
  out, _ = film_grain(jax.random.PRNGKey(AV1_SEED), jnp.asarray(content, jnp.float32), 0.5,
                      params=params, scale=1.0, random_seed=AV1_SEED)
  return np.asarray(out)


def grain_results(task, state, batches, channels=grain_stats.CHANNELS):
  """Mean grain statistics per method and channel over the valid examples of `batches` (global
  batches on the task's mesh): {"methods": {method: {channel: {stat: value}}}, "num_examples"}."""
  images_fn = make_images_fn(task)
  per_example = {method: [] for method, _ in ROWS}
  failed_fits = []
  for batch in batches:
    out = fetch_global(images_fn(state, batch))
    for i in np.flatnonzero(np.asarray(out["mask"]) > 0):
      x, y = out["content"][i], out["truth"][i]
      ref, ref_clean = out["reference"][i], out["reference_clean"][i]
      if float(np.mean(np.abs(ref - ref_clean))) > _MAX_REFERENCE_GRAIN:
        raise UserError("grain statistics: an eval reference is not grain on its partner's clean image "
                        "(CddTask.eval_pairs no longer pairs examples with the previous one?)")
      made = {"transfer": out["transfer"][i], "reproduction": out["reproduction"][i], "clean": x,
              "residual_paste": out["residual_paste"][i]}
      try:
        made["av1_fit"] = av1_fit_baseline(x, ref_clean, ref)
      except UserError as e:  # e.g. a reference too clipped to fit: counted and reported
        failed_fits.append(str(e))
      for method, image in made.items():
        per_example[method].append(grain_stats.compare(x, y, x, image, channels))
  if not per_example["clean"]:
    raise UserError("grain statistics: the evaluation data is empty")
  methods = {method: {c: {s: _mean([e[c][s] for e in rows]) for s in grain_stats.STATS} for c in channels}
             for method, rows in per_example.items()}
  return {"methods": methods, "num_examples": len(per_example["clean"]), "failed_fits": failed_fits}


def _mean(values):
  """Mean ignoring NaN (a curve with no bin in common); inf stays inf; NaN if nothing is left (e.g.
  no AV1 fit succeeded)."""
  finite_or_inf = [v for v in values if not math.isnan(v)]
  return float(np.mean(finite_or_inf)) if finite_or_inf else float("nan")


def table(results, channel="Y") -> str:
  """Markdown table of methods (rows) by grain statistics (columns) for one channel."""
  lines = [f"| method ({channel}) | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
           "|---" * (len(COLUMNS) + 1) + "|"]
  for key, label in ROWS:
    stats = results["methods"][key][channel]
    cells = [_cell(stats[name], fmt) for name, _, fmt in COLUMNS]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _cell(value, fmt):
  if math.isnan(value):
    return "n/a"
  return "∞" if math.isinf(value) else fmt.format(value)


def tables(results) -> str:
  """One table per channel, with the notes that say how the numbers were made."""
  channels = list(next(iter(results["methods"].values())))
  notes = (f"{results['num_examples']} examples; grain = degraded − clean in full-range BT.601 YCbCr "
           "on [0, 1]; σ in 16 clean-luma bins, spectra radially averaged, JSD base 2 over 64 bins of "
           "[−0.25, 0.25]; lower is better.")
  failed = results.get("failed_fits", [])
  if failed:
    notes += f" The AV1 fit failed on {len(failed)} reference(s), left out of its row: {failed[0]}"
  return "\n".join(table(results, c) for c in channels) + "\n" + notes + "\n"


def evaluate(config, workdir, step):
  """Grain statistics of the run in `workdir` at checkpoint `step`; writes grain_stats.json and
  grain_stats.md there. Returns (results, Markdown tables)."""
  from jaxdeg.train import checkpoint as ckpt
  from jaxdeg.train import trainer
  setup = trainer.Setup(config)
  with ckpt.create_manager(workdir, read_only=True) as mgr:
    state = ckpt.restore(mgr, step, setup.abstract_state)
  return evaluate_state(setup, state, workdir, f"step {step}", step=int(step))


def evaluate_state(setup, state, out_dir, title, **extra):
  """Grain statistics of `state` on the eval data of `setup`; grain_stats.json / .md in out_dir."""
  batches = (setup.global_batch(b) for b in setup.task.eval_data())
  results = grain_results(setup.task, state, batches)
  results.update(extra)
  return results, _write(results, out_dir, title)


def _write(results, out_dir, title, name="grain_stats"):
  text = tables(results)
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
      json.dump(results, f, indent=1)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
      f.write(f"## grain statistics, {title}\n\n{text}")
  return text


# ------------------------------------------------------------------------------------------------
# whole frames: the official notebooks' use of a film-grain model


def frame_results(model, frames, seed=0, tile=None, overlap=64, paste_sigma=1.5, channels=grain_stats.CHANNELS):
  """Grain statistics at full resolution. `frames`: [(clean, grainy)] pairs of (H, W, 3) [0, 1]
  frames (e.g. one decode with and without AV1 grain). Frame i's reference is frame i−1's grainy
  frame (the first takes the last), as CddTask.eval_pairs pairs eval examples: the model puts the
  reference's grain on clean frame i (`model`: a jaxdeg.transfer.Transfer, tiles of `tile` if
  given), which is compared with the real grainy frame i, next to the baselines (residual paste of
  the reference; the AV1 table fitted on the reference pair, synthesised on clean frame i)."""
  if len(frames) < 2:
    raise UserError(f"grain statistics on frames: {len(frames)} pair(s); the reference of a frame is another "
                    "frame's grain, so at least 2 are needed")
  per_example = {method: [] for method, _ in ROWS}
  failed_fits = []
  for i, (x, y) in enumerate(frames):
    ref_clean, ref = frames[i - 1]
    made = {"transfer": model.transfer(x, ref, key=seed, tile=tile, overlap=overlap),
            "reproduction": model.transfer(x, y, key=seed, tile=tile, overlap=overlap), "clean": x,
            "residual_paste": residual_paste(jnp.asarray(x)[None], jnp.asarray(ref)[None], paste_sigma)[0]}
    try:
      made["av1_fit"] = av1_fit_baseline(x, ref_clean, ref)
    except UserError as e:
      failed_fits.append(str(e))
    for method, image in made.items():
      per_example[method].append(grain_stats.compare(x, y, x, np.asarray(image), channels))
  methods = {method: {c: {s: _mean([e[c][s] for e in rows]) for s in grain_stats.STATS} for c in channels}
             for method, rows in per_example.items()}
  return {"methods": methods, "num_examples": len(frames), "failed_fits": failed_fits, "source": model.source}


def read_frames(folder):
  """[(clean, grainy)] from folder/clean and folder/degraded (files paired by name, as the film-grain
  config's `pairs=` layout)."""
  from jaxdeg.data.images import read_image
  from jaxdeg.transfer import pair_folders
  return [(read_image(c), read_image(g)) for c, g, _ in pair_folders(os.path.join(folder, "clean"),
                                                                     os.path.join(folder, "degraded"))]


def main(argv=None):
  """python -m jaxdeg.cdd_grain_eval (--workdir RUN | --weights FILE) --pairs DIR [--tile T] [--output-dir D]"""
  import argparse
  import sys
  from jaxdeg import transfer
  p = argparse.ArgumentParser(prog="python -m jaxdeg.cdd_grain_eval",
                              description="grain statistics of a film-grain model on whole frames")
  p.add_argument("--workdir", help="a `cdd` run")
  p.add_argument("--weights", help="an official checkpoint file")
  p.add_argument("--step", type=int)
  p.add_argument("--no-compress-global", action="store_true")
  p.add_argument("--no-compress-local", action="store_true")
  p.add_argument("--pairs", required=True, help="folder with clean/ and degraded/ frames of the same names")
  p.add_argument("--tile", type=int)
  p.add_argument("--overlap", type=int, default=64)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--output-dir", help="where grain_stats_frames.json/.md go (default: the run, or the current folder)")
  a = p.parse_args(argv)
  try:
    if (a.workdir is None) == (a.weights is None):
      raise UserError("give the model as --workdir RUN (a jaxdeg run) or --weights FILE (an official checkpoint)")
    model = (transfer.load_official(a.weights, not a.no_compress_global, not a.no_compress_local)
             if a.weights else transfer.load_run(a.workdir, a.step))
    results = frame_results(model, read_frames(a.pairs), a.seed, a.tile, a.overlap)
    out_dir = a.output_dir or a.workdir or "."
    os.makedirs(out_dir, exist_ok=True)
    text = _write(results, out_dir, f"whole frames of {a.pairs}, {model.source}", name="grain_stats_frames")
  except UserError as e:
    print(f"jaxdeg: error: {e}", file=sys.stderr)
    return 2
  print(text)
  return 0


if __name__ == "__main__":
  import sys
  sys.exit(main())
