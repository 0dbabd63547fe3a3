"""A small NAFNet learns to undo blur + noise made on the device in every step, on the bundled sample
photos (CPU, minutes); the launchers' example and the trainer tests' config.

  python -m jaxdeg.main --config=configs/restore_procedural.py --workdir=runs/restore --mode=train
  python -m jaxdeg.main --config=configs/restore_procedural.py --workdir=runs/restore --mode=evaluate

Variants: `configs/restore_procedural.py:tiny` (a few steps of a very small model, for tests).
"""
from jaxdeg.train.defaults import base_config


def get_config(variant=None):
  c = base_config()
  c.task = "restore"
  c.seed = 0

  c.model.name = "nafnet"
  c.model.width = 16
  c.model.enc_blocks = (1, 1)
  c.model.middle_blocks = 1
  c.model.dec_blocks = (1, 1)

  c.data.train_photos = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                         "immunohistochemistry", "china", "flower", "colorwheel")
  c.data.eval_photos = ("grace_hopper", "retina")
  c.data.crop = 48
  c.data.eval_crop = 256
  # Applied on the device in every step, in order; one intensity per image drawn in the range.
  c.data.degradations = ({"name": "gaussian_blur", "intensity": (0.0, 0.6)},
                         {"name": "gaussian_noise", "intensity": (0.0, 0.6)})

  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 50
  c.optimizer.final_lr_fraction = 0.05
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.99
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip = 1.0

  c.train.steps = 800
  c.train.batch_size = 8
  c.train.ema_decay = 0.995
  c.train.log_every = 50
  c.train.eval_every = 400
  c.train.checkpoint_every = 400
  c.eval.batch_size = 8
  c.eval.grid_name = "restored.png"
  c.eval.grid_rows = 2

  if variant == "tiny":
    c.model.width = 8
    c.model.enc_blocks = (1,)
    c.model.middle_blocks = 1
    c.model.dec_blocks = (1,)
    c.data.crop = 32
    c.data.eval_crop = 64
    c.train.steps = 20
    c.train.batch_size = 8
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    c.optimizer.warmup_steps = 2
  elif variant:
    raise ValueError(f"configs/restore_procedural.py: unknown variant {variant!r}; variants: tiny")
  return c
