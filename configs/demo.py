"""Demo: jaxdeg's main job in small, on the photos bundled with installed packages (CPU, minutes).

Synthesise degraded/clean pairs GenDS-style (every clean photo gets haze, rain, snow and low light at
intensities drawn from fitted (μ, σ) histograms) into ArrayRecord shards, train an all-in-one
restorer on those shards, then evaluate it from its checkpoint per type on held-out photos:

  python -m jaxdeg.main --config=configs/demo.py:synthesize --workdir=workdir/synthetic --mode=synthesize
  python -m jaxdeg.main --config=configs/demo.py:workdir/synthetic --workdir=workdir/restorer --mode=train
  python -m jaxdeg.main --config=configs/demo.py:workdir/synthetic --workdir=workdir/restorer --mode=evaluate

(`make demo` runs the three.) The argument of the restorer's config is the synthesis workdir.
Outputs: workdir/synthetic/synthesis_pairs.png (a contact sheet of the synthesised pairs),
workdir/restorer/demo.png (input | restored | target per held-out image), metrics.md (PSNR/SSIM of
the degraded inputs and of the restored outputs, overall and per type).

With GenDeg's released weights the pairs come from the diffusion model instead of the calibrated
procedural generator: add `--config.synth.generator=released --config.synth.weights=FILE` to the
first command (`make demo GENDEG_WEIGHTS=FILE`).

Variants: `synthesize`, `synthesize-tiny` and `tiny:DIR` (a few steps of a very small model, for tests).
"""
from jaxdeg.data.from_config import defaults as data_defaults
from jaxdeg.data import samples
from jaxdeg.recipes import NAFNET_CPU_ADAMW, SMALL_NAFNET, TINY_NAFNET
from jaxdeg.synth.run import defaults as synth_defaults
from jaxdeg.train.defaults import base_config

TYPES = ("haze", "rain", "snow", "low_light")
TRAIN_PHOTOS, HELD_OUT = samples.split()  # held out: 3 photos × 4 types = 12 evaluation images
REPEATS = 3  # each photo enters synthesis three times: three draws of (μ, σ) per type


def synthesis_config(tiny=False):
  c = base_config()
  c.task = ""  # --mode=synthesize reads `synth`
  c.synth = synth_defaults()
  photos = TRAIN_PHOTOS[:2] if tiny else TRAIN_PHOTOS * REPEATS
  c.synth.clean_sources = ({"kind": "samples", "photos": photos},)
  c.synth.types = TYPES[:2] if tiny else TYPES
  c.synth.generator = "procedural"
  c.synth.size = 64 if tiny else 256
  c.synth.fit_samples_per_type = 8 if tiny else 32
  c.synth.batch_size = 4 if tiny else 8
  c.synth.prefix = "demo"
  return c


def restorer_config(pairs, tiny=False):
  c = base_config()
  c.task = "restore"
  c.seed = 0
  c.data.update(data_defaults())
  types = TYPES[:2] if tiny else TYPES
  c.data.sources = ({"kind": "array_record", "path": pairs, "types": types, "label": "synthetic"},)
  c.data.eval_sources = tuple(
      {"kind": "samples", "photos": HELD_OUT[:1] if tiny else HELD_OUT,
       "degradations": [{"name": t, "intensity": (0.5, 0.5)}], "label": f"held-out {t}"} for t in types)
  c.data.types = types
  c.data.crop, c.data.eval_crop, c.data.flip = 48, 192, "hv"

  c.model.update(SMALL_NAFNET)
  c.optimizer.update(NAFNET_CPU_ADAMW)
  c.train.update(steps=600, batch_size=8, ema_decay=0.995, log_every=50, eval_every=600, checkpoint_every=300)
  c.eval.update(batch_size=4, grid_name="demo.png", grid_rows=4)
  if tiny:
    c.model.update(TINY_NAFNET)
    c.data.crop, c.data.eval_crop = 32, 64
    c.train.update(steps=6, checkpoint_every=6, eval_every=6, log_every=3)
    c.optimizer.warmup_steps = 2
    c.eval.batch_size, c.eval.grid_rows = 2, 2
  return c


def get_config(arg=None):
  if arg in ("synthesize", "synthesize-tiny"):
    return synthesis_config(tiny=arg.endswith("tiny"))
  tiny = bool(arg) and arg.startswith("tiny:")
  return restorer_config((arg[len("tiny:"):] if tiny else arg) or "workdir/synthetic", tiny=tiny)
