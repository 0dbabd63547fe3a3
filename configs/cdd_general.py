"""The universal degradation model, general ("WQI") training: random homogeneous degradations and
inpainting holes on clean photos, learned as (degraded, clean) pairs.

  python -m jaxdeg.main --config=configs/cdd_general.py:/data/photos --workdir=runs/cdd --mode=train
  python -m jaxdeg.main --config=configs/cdd_general.py:/data/photos --workdir=runs/cdd --mode=evaluate
  jaxdeg transfer --workdir runs/cdd --content clean.png --reference degraded.png out.png

The argument is a folder of clean photos (any layout; every image in it, recursively). Each crop
gets a fresh WQI degradation (focus/motion blur, exposure, 1/f and Gaussian noise, JPEG; the
`wqi` recipe of jaxdeg.degrade) and, in a quarter of the examples, inpainting holes on top
(the paper's inhomogeneous examples; real rain pairs can be added as `paired` sources).
Evaluation: held-out bundled photos, each degraded with a key from its index; see
`jaxdeg.tasks.cdd` for the reproduction/transfer protocol and its baselines.

Variants:
  tiny   a very small model on the bundled photos, 32² crops (tests)
  cpu    the CPU experiment of docs/cdd_cpu.md (docs/make_cdd_cpu_run.py): a small model, 32² crops
         blurred as crops of 192² images, 2400 steps, under 30 min on 2 CPU cores
Values the paper does not give (marked "unknown" below) are guesses.
"""
import ml_collections
from ml_collections.config_dict import placeholder

from jaxdeg.data.from_config import defaults as data_defaults
from jaxdeg.train.defaults import base_config

TRAIN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                "colorwheel", "china")
EVAL_PHOTOS = ("grace_hopper", "retina", "flower")
WQI = dict(name="wqi", intensity=1.0)
HOLES = dict(name="inpaint_mask", intensity=(0.2, 1.0))


def wqi_sources(make, **wqi):
  """Homogeneous WQI examples, and WQI plus inpainting holes at a quarter of the rate; `wqi`: the
  recipe's overrides (e.g. side=192: crops blur as crops of 192-px images would)."""
  recipe = dict(WQI, **wqi)
  return (make(degradations=[recipe], weight=3.0, label="wqi"),
          make(degradations=[recipe, HOLES], weight=1.0, label="wqi+holes"))


def model_config(**changes):
  """The paper's model (DegradationModel defaults: ≈14.5 M parameters at 128²)."""
  c = dict(global_dim=256, local_dim=4, encoder_dim=256, encoder_kernel=3, local_latent=64,
           generator_width=64, generator_blocks=(4, 3, 2, 3, 4), cond_dim=8,
           compress_global=True, compress_local=True,  # the official netCprs / netCprs_loc `enabled`
           use_ida=True, use_iden=True,
           official_input_scaling=False)  # True only with the official weights (init_from a released file)
  c.update(changes)
  return ml_collections.ConfigDict(c)


def loss_config(**changes):
  c = dict(
      l1_weight=10.0,              # L_sim without DISTS; the paper's general model has 10·DISTS and no L1
      colour_weight=10.0,
      diversity_weight=1.0,
      contrastive_weight=1e-4,
      rate_global_weight=1e-4,
      rate_local_weight=1.0,
      aux_weight=1.0,
      gan_weight=1.0,              # unknown for the general model (film grain: 10)
      # α of −α·D(ŷ) and of the critic loss; unknown. The generator's output is unbounded, so a
      # strong GAN term lets it chase the critic's slope: at α = 1 the CPU run's outputs ran away
      # (L1 ≈ 1e13 at step 650). At 0.01 the GAN gradient is a few % of the L1 one per pixel
      # (film grain, gan_weight 10: tens of %).
      gan_alpha=0.01,
      gp_weight=10.0,
      # DISTS/LPIPS need ImageNet VGG weights: local files (--config.loss.<field>=PATH), read once
      # when the task is built; .pth needs torch, .npz copies with the same keys do not
      vgg16_weights=placeholder(str),  # torchvision's vgg16 state dict, e.g. vgg16-397923af.pth
      dists_weights=placeholder(str),  # DISTS_pytorch's weights.pt (alpha, beta): turns DISTS on
      lpips_weights=placeholder(str),  # the lpips package's weights/v0.1/vgg.pth: turns LPIPS on
      dists_weight=10.0,           # the paper's L_sim (general and film grain)
      lpips_weight=1.0)            # unknown (the paper's LPIPS variants)
  c.update(changes)
  return ml_collections.ConfigDict(c)


def optimizer_config(**changes):
  c = dict(learning_rate=1e-4,     # unknown (encoders and generator)
           compressor_learning_rate=1e-3,
           b1=0.9, b2=0.999,       # unknown
           eps=1e-3,
           critic_learning_rate=1e-4, critic_b1=0.5, critic_b2=0.9,  # unknown (WGAN-GP customs)
           grad_clip=0.0)          # 0: none (the paper clips nothing)
  c.update(changes)
  return ml_collections.ConfigDict(c)


def common(c):
  c.task = "cdd"
  c.data.update(data_defaults())
  c.data.degraded_key = True       # the MoCo positive: a second crop of the same degraded image
  c.data.flip = ""                 # the paper does not flip
  c.data.eval_degradations = [WQI, dict(HOLES, p=0.25)]
  c.model = model_config()
  # width unknown (64 is the official default); strategy: the official netP.strategy
  # ('unconditioned', 'conditioned' or 'patched'; see jaxdeg/tasks/_cdd_critic.py)
  c.critic = ml_collections.ConfigDict(dict(width=64, strategy="unconditioned"))
  c.moco = ml_collections.ConfigDict(dict(queue_size=120, momentum=0.999, temperature=0.07))
  c.loss = loss_config()
  c.optimizer = optimizer_config()
  c.train.ema_decay = 0.0
  c.eval.paste_sigma = 1.5         # residual_paste baseline: reference − GaussianBlur_σ(reference)
  # reference and target share the degradation's parameters and masks; True: also its noise pattern
  c.eval.shared_fields = False
  c.eval.dists_weights = placeholder(str)  # DISTS in the eval table (with eval.vgg16_weights)
  c.eval.grid_name = "cdd.png"
  return c


def samples(photos):
  return lambda **kw: dict(kind="samples", photos=photos, **kw)


def get_config(arg=None):
  c = common(base_config())
  eval_repeats = 2
  if arg == "tiny":
    c.data.sources = wqi_sources(samples(TRAIN_PHOTOS))
    c.model = model_config(global_dim=16, encoder_dim=16, local_latent=8, generator_width=8,
                           generator_blocks=(1, 1, 1, 1, 1))
    c.critic.width = 8
    c.data.crop, c.data.eval_crop = 32, 64
    # cheap to compile: the eval degradations run inside the jitted eval step
    c.data.eval_degradations = [dict(name="gaussian_noise", intensity=(0.2, 0.8)), dict(HOLES, p=0.5)]
    c.train.steps, c.train.batch_size, c.eval.batch_size = 30, 8, 8
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 5, 30, 30
    c.optimizer.learning_rate = 1e-3
    c.eval.grid_rows = 2
  elif arg == "cpu":
    # sized for ~0.8 s a step on 2 busy CPU cores; XLA:CPU spends most of it in the kernel
    # gradients of the transposed convs (IDEN's long-range branch, IDA), which grow fast with the crop
    # the blur of a 32² crop of a 192² image, so that training matches the 192² evaluation
    c.data.sources = wqi_sources(samples(TRAIN_PHOTOS), side=192)
    c.model = model_config(global_dim=32, encoder_dim=32, local_latent=16, generator_width=16,
                           generator_blocks=(1, 1, 1, 1, 1))
    c.critic.width = 8
    c.data.crop, c.data.eval_crop = 32, 192
    c.train.steps, c.train.batch_size, c.eval.batch_size = 2400, 8, 8
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 50, 800, 800
    c.optimizer.learning_rate = 5e-4
    # With the paper's eps 1e-3 and these mean-reduced losses, IDEN's and the critic's gradients
    # (RMS 1e-6–1e-5 at step 400 of a run at 1e-3, read from Adam's second moments) sat far below
    # eps: Adam scaled their steps down 100–1000×, IDEN learnt no holes and the critic no slope.
    c.optimizer.eps = 1e-8
    c.eval.grid_rows = 4
    eval_repeats = 4
  else:
    c.data.sources = wqi_sources(lambda **kw: dict(kind="folder", path=arg or "/data/photos", **kw))
    c.data.crop, c.data.eval_crop = 128, 192
    c.train.steps = 300_000        # unknown
    c.train.batch_size = 24
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 100, 10_000, 5_000
    c.eval.batch_size = 8
  # consecutive eval examples are different photos, so each reference shows other content
  c.data.eval_sources = (dict(kind="samples", photos=EVAL_PHOTOS * eval_repeats, label="held-out photos"),)
  return c
