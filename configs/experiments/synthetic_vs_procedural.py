"""The experiment of both papers, in small: does adding learned-synthesiser pairs to procedural ones
help a restorer on degradations neither generator was built for?

  python docs/make_synthetic_vs_procedural.py --cdd-workdir runs/cdd    # all of it, then the table
  python -m jaxdeg.main --config=configs/experiments/synthetic_vs_procedural.py:procedural ...
  python -m jaxdeg.main --config=configs/experiments/synthetic_vs_procedural.py:synthetic=DIR ...

The same small NAFNet, the same steps, trained on
  procedural      clean bundled photos degraded on the fly with the WQI recipe (jaxdeg.degrade),
  synthetic=DIR   the same, plus (weight `SYNTHETIC_WEIGHT`) the pairs in DIR: clean crops of the
                  same photos carrying degradations a trained universal degradation model
                  transferred from a few unpaired degraded references (ArrayRecord shards,
                  `jaxdeg.transfer.write_pairs`),
and evaluated on held-out photos degraded by the Real-ESRGAN second-order pipeline (the "real"
degradation: neither training generator is it; the synthesiser only saw a few references of it),
and, as a control, on held-out photos degraded by WQI (the procedural generator's own domain).
"""
from jaxdeg.data.from_config import defaults as data_defaults
from jaxdeg.data import samples
from jaxdeg.recipes import NAFNET_CPU_ADAMW, SMALL_NAFNET
from jaxdeg.train.defaults import base_config

TRAIN_PHOTOS, EVAL_PHOTOS = samples.split()
TARGET = dict(name="realesrgan", intensity=(0.3, 0.7))   # the held-out "real" degradation
PROCEDURAL = dict(name="wqi", intensity=1.0)              # the training-time generator
SYNTHETIC_WEIGHT = 1.0                                    # learned pairs : procedural pairs = 1 : 1
EVAL_REPEATS = 4                                          # each photo with this many degradation draws


def get_config(arg=None):
  arg = arg or "procedural"
  c = base_config()
  c.task = "restore"
  c.data.update(data_defaults())
  c.model.update(SMALL_NAFNET)
  c.loss = dict(fft_weight=0.0)

  sources = [dict(kind="samples", photos=TRAIN_PHOTOS, degradations=[PROCEDURAL], label="procedural (WQI)")]
  if arg.startswith("synthetic="):
    sources.append(dict(kind="array_record", path=arg.split("=", 1)[1], weight=SYNTHETIC_WEIGHT,
                        label="learned transfers"))
  elif arg != "procedural":
    raise ValueError(f"configs/experiments/synthetic_vs_procedural.py: unknown argument {arg!r}; "
                     "use 'procedural' or 'synthetic=<folder of transfer shards>'")
  c.data.sources = tuple(sources)
  c.data.eval_sources = (
      dict(kind="samples", photos=EVAL_PHOTOS * EVAL_REPEATS, degradations=[TARGET], label="held-out Real-ESRGAN"),
      dict(kind="samples", photos=EVAL_PHOTOS * EVAL_REPEATS, degradations=[PROCEDURAL], label="held-out WQI"))
  c.data.crop, c.data.eval_crop = 48, 128
  c.data.flip = "hv"

  c.optimizer.update(NAFNET_CPU_ADAMW)
  c.train.update(steps=800, batch_size=8, ema_decay=0.995, log_every=100, eval_every=800, checkpoint_every=800)
  c.eval.update(batch_size=8, grid_name="grid.png", grid_rows=3)
  return c
