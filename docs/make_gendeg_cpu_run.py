"""GenDeg end to end on a CPU: VAE, then LDM, then guided sampling over types × intensities.

  python docs/make_gendeg_cpu_run.py [--workdir /tmp/gendeg_cpu] [--vae-steps N --ldm-steps N]

Trains `configs/gendeg_vae.py` and `configs/gendeg_ldm.py` at the CPU sizes below (64² crops of
the bundled photos, procedural pairs made on the device), then, on held-out photos, generates every type at a
ladder of requested intensities μ (σ from the fitted histograms of that μ bin), measures the
achieved μ, and writes
  docs/gendeg_samples.png   rows: held-out crops; columns: clean | type × intensity
  docs/gendeg_cpu.md        timings, and per type the rank correlation of achieved vs requested μ
A short `--mode=synthesize` run with the trained LDM closes the loop (shards, kept/dropped counts).
"""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jaxdeg.data import images as image_io  # noqa: E402
from jaxdeg.data import samples  # noqa: E402
from jaxdeg.degrade import intensity  # noqa: E402
from jaxdeg.synth import procedural  # noqa: E402
from jaxdeg.tasks import runs
from jaxdeg.train import trainer  # noqa: E402
from tests.utils import load_config  # noqa: E402

# The CPU sizes: 64² crops, f = 8 (8² latents), a two-level UNet with cross-attention at the lower
# resolution, three of GenDeg's types. Not motion blur: at 64² its μ spans only 0–0.02, below what
# this small VAE reproduces (mean |x − decode(encode(x))| ≈ 0.08), so its intensity cannot be read
# off the samples.
TYPES = ("haze", "low_light", "snow")
VAE_CPU = dict(model__block_out_channels=(16, 32, 32, 32), model__layers_per_block=1, model__norm_num_groups=8,
               data__crop=64, data__eval_crop=64, train__batch_size=8, train__steps=400, train__eval_every=0,
               train__checkpoint_every=400, train__log_every=50, optimizer__learning_rate=2e-3, pairs__types=TYPES)
LDM_CPU = dict(model__block_out_channels=(64, 128), model__layers_per_block=1, model__attention_levels=(False, True),
               model__num_heads=4, model__cross_attention_dim=64, model__norm_num_groups=16, context__context_len=8,
               conditioning__stats_size=64, context__stats_proj_init="ordinal", data__crop=64, data__eval_crop=64,
               data__resize=64,  # GenDeg's recipe: whole photos resized (docs/gendeg_cpu.md predates it: crops)
               train__batch_size=16,
               train__steps=2400, train__eval_every=0, train__checkpoint_every=800, train__log_every=100,
               train__ema_decay=0.995, optimizer__learning_rate=5e-4, pairs__types=TYPES)
TEXT_SCALES = (7.5, 2.0)  # GenDeg's s_T first (the grid), then a milder one
IMAGE_SCALE = 1.5
LEVELS = 6          # requested μ ladder per type
GRID_LEVELS = 3     # of which the grid shows these many
CROPS_PER_PHOTO = 4


def held_out_crops(photos, size, per_photo, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for name in photos:
    img = image_io.to_float(samples.load(name))
    h, w = img.shape[:2]
    for _ in range(per_photo):
      y, x = rng.integers(0, h - size), rng.integers(0, w - size)
      out.append(img[y:y + size, x:x + size])
  return np.stack(out).astype(np.float32)


def _steps(n):
  return {"train__steps": n, "train__checkpoint_every": n} if n else {}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", default="/tmp/gendeg_cpu")
  p.add_argument("--vae-steps", type=int)
  p.add_argument("--ldm-steps", type=int)
  p.add_argument("--sample-steps", type=int, default=50)
  p.add_argument("--out", default=os.path.join(ROOT, "docs"))
  a = p.parse_args(argv)
  times = {}

  vae_cfg = load_config("configs/gendeg_vae.py:tiny", **{**VAE_CPU, **_steps(a.vae_steps)})
  t0 = time.monotonic()
  trainer.train_and_evaluate(vae_cfg, os.path.join(a.workdir, "vae"))
  times["vae training"] = time.monotonic() - t0

  ldm_cfg = load_config("configs/gendeg_ldm.py:tiny", **{**LDM_CPU, **_steps(a.ldm_steps)})
  ldm_cfg.vae.workdir = os.path.join(a.workdir, "vae")
  t0 = time.monotonic()
  trainer.train_and_evaluate(ldm_cfg, os.path.join(a.workdir, "ldm"))
  times["LDM training"] = time.monotonic() - t0

  t0 = time.monotonic()
  from jaxdeg.tasks.ldm import Sampler
  config, task, state, step = runs.load_run(os.path.join(a.workdir, "ldm"))
  types = tuple(config.pairs.types)
  size, stats_size = config.data.crop, int(config.conditioning.stats_size)
  eval_photos = tuple(config.data.eval_sources[0]["photos"])
  clean = held_out_crops(eval_photos, size, CROPS_PER_PHOTO)
  train_photos = tuple(config.data.sources[0]["photos"])
  fit_images = held_out_crops(train_photos, size, 8, seed=1)
  hist = procedural.fit_procedural(fit_images, types, 256, stats_size=stats_size)

  sampler = Sampler(task, a.sample_steps, "euler_ancestral", config.eval.get("sigma_interp", "log"))
  params, vae = state.inference_params(), state.model_state["vae"]
  generate = jax.jit(lambda c, t, m, s, k, scale: sampler.sample(params, vae, c, t, m, s, k, scale, IMAGE_SCALE))
  measure = jax.jit(lambda c, g: intensity.intensity_stats(c, g, size=stats_size))

  n = len(clean)
  table, grid_cols = [], {}
  for text_scale in TEXT_SCALES:
    for t_index, type_name in enumerate(types):
      joint = hist.counts[type_name]
      mu_hist = joint.sum(1)
      nonzero = np.nonzero(mu_hist)[0]
      # the ladder spans the 5th..95th percentile of the fitted μ distribution of this type
      cdf = np.cumsum(mu_hist) / mu_hist.sum()
      lo_bin, hi_bin = np.searchsorted(cdf, 0.05), np.searchsorted(cdf, 0.95)
      mu_bins = np.unique(np.linspace(max(lo_bin, nonzero.min()), min(hi_bin, nonzero.max()), LEVELS).round().astype(int))
      requested, achieved = [], []
      for level, mb in enumerate(mu_bins):
        sb = int(np.argmax(joint[mb])) if joint[mb].any() else int(np.argmax(joint.sum(0)))
        tid = jnp.full((n,), task.context.types.index(type_name), jnp.int32)
        # the same noise for a crop at every level (common random numbers): the levels differ by
        # the conditioning only, not by the sampling noise
        key = jax.random.PRNGKey(7)
        out = generate(jnp.asarray(clean), tid, jnp.full((n,), mb, jnp.int32), jnp.full((n,), sb, jnp.int32), key,
                       text_scale)
        got_mu = np.asarray(measure(jnp.asarray(clean), out)[0])
        req_mu = float(intensity.bin_bounds(mb, intensity.MU_RANGE)[0]) + 0.5 * 0.7 / intensity.NUM_BINS
        requested += [req_mu] * n
        achieved += got_mu.tolist()
        if text_scale == TEXT_SCALES[0]:
          grid_cols[(type_name, level)] = np.asarray(out)
      rho = scipy.stats.spearmanr(requested, achieved)[0]
      per_level = [float(np.mean(achieved[i * n:(i + 1) * n])) for i in range(len(mu_bins))]
      rho_means = scipy.stats.spearmanr(np.arange(len(per_level)), per_level)[0]
      table.append((text_scale, type_name, rho, rho_means,
                    [float(intensity.bin_bounds(b, intensity.MU_RANGE)[0]) for b in mu_bins], per_level))
  times["sampling"] = time.monotonic() - t0

  show = np.linspace(0, LEVELS - 1, GRID_LEVELS).round().astype(int)
  grid_rows = []
  for i in range(min(4, n)):
    row = [clean[i]]
    for type_name in types:
      for level in show:
        if (type_name, level) in grid_cols:
          row.append(grid_cols[(type_name, level)][i])
    grid_rows.append(row)
  image_io.write_image(os.path.join(a.out, "gendeg_samples.png"), image_io.make_grid(grid_rows))

  t0 = time.monotonic()
  synth = load_config("configs/gendeg_synthesize.py")
  synth.synth.clean_sources = ({"kind": "samples", "photos": eval_photos},)
  synth.synth.size = size
  synth.synth.types = types
  synth.synth.ldm_workdir = os.path.join(a.workdir, "ldm")
  synth.synth.steps = a.sample_steps
  synth.synth.fit_samples_per_type = 64
  from jaxdeg.synth import run as synth_run
  summary = synth_run.run(synth, os.path.join(a.workdir, "synth"))
  times["synthesis (--mode=synthesize)"] = time.monotonic() - t0

  lines = [
      "# GenDeg on a CPU",
      "",
      f"Produced by `python docs/make_gendeg_cpu_run.py` on {jax.devices()[0].device_kind} "
      f"({os.cpu_count()} cores): `configs/gendeg_vae.py` ({vae_cfg.train.steps} steps) then "
      f"`configs/gendeg_ldm.py` ({config.train.steps} steps) at the CPU sizes in the script, {size}² crops of the bundled photos, pairs "
      f"made on the device with the procedural {', '.join(types)}.",
      "",
      "| stage | minutes |",
      "|---|---|",
  ] + [f"| {k} | {v / 60:.1f} |" for k, v in times.items()] + [
      f"| total | {sum(times.values()) / 60:.1f} |",
      "",
      f"Guided sampling ({a.sample_steps} Euler-ancestral steps, s_I = {IMAGE_SCALE}, s_T as in the table) of {n} held-out crops "
      f"({', '.join(eval_photos)}) per type and requested μ; σ is the most frequent σ bin of that μ bin in "
      "histograms fitted on procedural pairs; each crop keeps its sampling noise at every level. Spearman "
      "rank correlation between requested and achieved μ (μ = mean |clean − generated| at "
      f"{stats_size}²), over all samples and over the per-level means:",
      "",
      "| s_T | type | rank correlation (samples) | rank correlation (level means) | requested μ (bin lower edges) "
      "| mean achieved μ |",
      "|---|---|---|---|---|---|",
  ] + [f"| {st} | {t} | {rho:.3f} | {rho_m:.3f} | {', '.join(f'{m:.3f}' for m in req)} | "
       f"{', '.join(f'{m:.3f}' for m in got)} |" for st, t, rho, rho_m, req, got in table] + [
      f"| {st} | all types (mean) | {np.mean([r[2] for r in table if r[0] == st]):.3f} | "
      f"{np.mean([r[3] for r in table if r[0] == st]):.3f} | | |" for st in TEXT_SCALES] + [
      "",
      "![samples](gendeg_samples.png)",
      "",
      f"Rows: held-out crops. Columns: clean, then per type ({', '.join(types)}) the lowest, middle and "
      f"highest requested μ, at s_T = {TEXT_SCALES[0]}.",
      "",
      f"`--mode=synthesize` with this LDM on the same photos: {summary['jobs']} jobs, kept {summary['kept']}, "
      f"dropped {summary['dropped']} (achieved μ off the request by more than 0.02 + 25%), "
      f"{summary.get('images_per_second_after_first_batch', summary['images_per_second']):.2f} images/s after "
      "the first (compiling) batch.",
      "",
  ]
  with open(os.path.join(a.out, "gendeg_cpu.md"), "w") as f:
    f.write("\n".join(lines))
  print(json.dumps({"times": times, "rank_correlation": {f"{r[1]} s_T={r[0]}": r[2:4] for r in table}}, indent=1))


if __name__ == "__main__":
  main()
