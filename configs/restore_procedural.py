"""A small NAFNet learns to undo blur + noise made on the device in every step, on the bundled sample
photos (CPU, minutes); the launchers' example and the trainer tests' config.

  python -m jaxdeg.main --config=configs/restore_procedural.py --workdir=runs/restore --mode=train
  python -m jaxdeg.main --config=configs/restore_procedural.py --workdir=runs/restore --mode=evaluate

Variants: `configs/restore_procedural.py:tiny` (a few steps of a very small model, for tests).
"""
from jaxdeg.data import samples
from jaxdeg.recipes import NAFNET_CPU_ADAMW, SMALL_NAFNET, TINY_NAFNET, unknown_variant
from jaxdeg.train.defaults import base_config


def get_config(variant=None):
  c = base_config()
  c.task = "restore"
  c.seed = 0

  c.model.update(SMALL_NAFNET)

  c.data.train_photos, c.data.eval_photos = samples.split(held_out=("grace_hopper", "retina"))
  c.data.crop = 48
  c.data.eval_crop = 256
  # Applied on the device in every step, in order; one intensity per image drawn in the range.
  c.data.degradations = ({"name": "gaussian_blur", "intensity": (0.0, 0.6)},
                         {"name": "gaussian_noise", "intensity": (0.0, 0.6)})

  c.optimizer.update(NAFNET_CPU_ADAMW)
  c.train.update(steps=800, batch_size=8, ema_decay=0.995, log_every=50, eval_every=400, checkpoint_every=400)
  c.eval.update(batch_size=8, grid_name="restored.png", grid_rows=2)

  if variant == "tiny":
    c.model.update(TINY_NAFNET)
    c.data.crop, c.data.eval_crop = 32, 64
    c.train.update(steps=20, log_every=5, eval_every=10, checkpoint_every=10)
    c.optimizer.warmup_steps = 2
  elif variant:
    raise unknown_variant("configs/restore_procedural.py", variant, ["tiny"])
  return c
