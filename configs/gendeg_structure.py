"""GenDeg stage 3: the structure-correction NAFNet (clean ‖ generated → generated + residual).

  python -m jaxdeg.main --config=configs/gendeg_structure.py --workdir=runs/structure
  # inputs from a trained diffusion model instead of misaligned procedural targets:
  #   --config.structure.ldm_workdir=runs/ldm

See jaxdeg/tasks/structure.py for exactly what it trains on. GenDeg applies it to haze and motion
blur; the NAFNet size is GenDeg's (width 64, encoder [2,2,4,8], middle 12, decoder [2,2,2,2]).
Variants: `:tiny` (32² crops, a very small NAFNet: CPU tests).
"""
import ml_collections
from ml_collections import config_dict

from jaxdeg.recipes import TINY_NAFNET, unknown_variant
from jaxdeg.tasks.gendeg_data import data_config, pairs_config
from jaxdeg.train.defaults import base_config


def get_config(variant=None):
  c = base_config()
  c.task = "structure"

  c.model = ml_collections.ConfigDict(dict(width=64, enc_blocks=(2, 2, 4, 8), middle_blocks=12,
                                           dec_blocks=(2, 2, 2, 2), in_channels=6, out_channels=3))
  c.data = data_config(256)
  c.pairs = pairs_config(("haze", "motion_blur"))

  c.structure = ml_collections.ConfigDict()
  c.structure.ldm_workdir = config_dict.placeholder(str)  # a trained `ldm` run (optional)
  c.structure.use_ema = True
  c.structure.ldm_steps = 20                               # sampling steps per training step
  c.structure.text_scale = 7.5
  c.structure.image_scale = 1.5
  # Without an ldm run: the generated image is the target misaligned by at most these (choices)
  c.structure.max_shift = 3.0      # pixels
  c.structure.max_rotation = 2.0   # degrees
  c.structure.max_scale = 0.03     # relative zoom

  c.optimizer = ml_collections.ConfigDict(dict(learning_rate=1e-3, warmup_steps=1000, final_lr_fraction=0.01,
                                               b1=0.9, b2=0.9, weight_decay=0.0, grad_clip=1.0))
  c.train.update(steps=100_000, batch_size=16, ema_decay=0.999, log_every=100, eval_every=5000,
                 checkpoint_every=5000)
  c.eval.update(batch_size=8, grid_name="structure.png", grid_rows=4)

  if variant == "tiny":
    c.model.update({k: v for k, v in TINY_NAFNET.items() if k != "name"})
    c.data = data_config(32)
    c.pairs = pairs_config(("haze",))
    c.optimizer.update(learning_rate=2e-3, warmup_steps=2, final_lr_fraction=0.1)
    c.train.update(batch_size=8, steps=30, ema_decay=0.9, log_every=10, eval_every=30, checkpoint_every=30)
    c.eval.grid_rows = 2
  elif variant:
    raise unknown_variant("configs/gendeg_structure.py", variant, ["tiny"])
  return c
