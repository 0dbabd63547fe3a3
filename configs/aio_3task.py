"""All-in-one restoration, the 3-task protocol (AirNet / PromptIR): denoising (σ 15/25/50),
deraining, dehazing; PromptIR by default (`--config.model.name=nafnet` and NAFNet fields for the
other restorer).

  python -m jaxdeg.main --config=configs/aio_3task.py:/data/aio --workdir=runs/aio3 --mode=train
  python -m jaxdeg.main --config=configs/aio_3task.py:/data/aio --workdir=runs/aio3 --mode=evaluate

The argument is the data root, laid out as
  train/denoise/   clean BSD400 + WED images (noise is added on the fly at σ 15, 25, 50)
  train/derain/    Rain100L training pairs (rain-*.png / norain-*.png)
  train/dehaze/    RESIDE OTS (hazy/ and clear/)
  test/bsd68/      the 68 clean BSD68 images
  test/rain100l/   Rain100L test pairs
  test/sots/       SOTS outdoor (hazy/ and gt/)
Evaluation reports PSNR/SSIM per test set (BSD68 at each σ, Rain100L, SOTS) and per type in
metrics.md, on the full test images as the published protocol does (`eval.full_resolution`: each
image restored in overlapping `eval.tile`² tiles); `--config.eval.full_resolution=False` evaluates
batched centre crops of `data.eval_crop` instead (quicker, not comparable with the papers).
Variants: `tiny` (the same three-way structure on the bundled photos with procedural degradations,
tiny NAFNet; for tests).
"""
from jaxdeg.data.from_config import defaults as data_defaults
from jaxdeg.recipes import TINY_NAFNET
from jaxdeg.train.defaults import base_config

SIGMAS = (15, 25, 50)


def protocol_sources(root):
  train = tuple(dict(kind="paired", path=f"{root}/train/denoise", layout="bsd68", sigma=float(s),
                     label=f"BSD400+WED σ={s}") for s in SIGMAS)
  train += (dict(kind="paired", path=f"{root}/train/derain", layout="rain100l", weight=3.0, label="Rain100L"),
            dict(kind="paired", path=f"{root}/train/dehaze", layout="sots", weight=3.0, label="OTS"))
  test = tuple(dict(kind="paired", path=f"{root}/test/bsd68", layout="bsd68", sigma=float(s), label=f"BSD68 σ={s}")
               for s in SIGMAS)
  test += (dict(kind="paired", path=f"{root}/test/rain100l", layout="rain100l", label="Rain100L"),
           dict(kind="paired", path=f"{root}/test/sots", layout="sots", label="SOTS outdoor"))
  return train, test


def tiny_sources(types=("haze", "rain", "gaussian_noise")):
  photos, held_out = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower"), ("grace_hopper", "retina")
  train = tuple(dict(kind="samples", photos=photos, degradations=[dict(name=t, intensity=(0.3, 0.7))], label=t)
                for t in types)
  test = tuple(dict(kind="samples", photos=held_out, degradations=[dict(name=t, intensity=(0.5, 0.5))],
                    label=f"held-out {t}") for t in types)
  return train, test


def get_config(arg=None):
  c = base_config()
  c.task = "restore"
  c.data.update(data_defaults())
  c.model.name = "promptir"
  c.loss = dict(fft_weight=0.0)
  c.data.crop = 128
  c.data.eval_crop = 320
  c.data.flip = "hv"
  c.optimizer.update(learning_rate=2e-4, warmup_steps=1000, final_lr_fraction=0.0, b1=0.9, b2=0.999,
                     weight_decay=0.0, grad_clip=1.0)
  # PromptIR: 120 epochs at batch 32 (about 150k steps on this mixture)
  c.train.update(steps=150_000, batch_size=32, ema_decay=0.999, eval_every=10_000, checkpoint_every=5_000)
  c.eval.update(batch_size=8, grid_name="aio.png")
  if arg == "tiny":
    c.data.sources, c.data.eval_sources = tiny_sources()
    c.model = dict(TINY_NAFNET)
    c.data.crop, c.data.eval_crop, c.data.flip = 32, 64, ""
    c.train.update(steps=10, batch_size=8, log_every=5, eval_every=10, checkpoint_every=10)
    c.eval.batch_size = 8
    c.optimizer.learning_rate, c.optimizer.warmup_steps = 2e-3, 2
  else:
    c.data.sources, c.data.eval_sources = protocol_sources(arg or "/data/aio")
    c.eval.full_resolution = True
  return c
