"""GenDeg stage 1: the SD-1.x autoencoder (f = 8, 4 latent channels), trained from scratch on clean
and degraded images, since SD's pretrained VAE cannot be downloaded here. Users who have the SD VAE
skip this stage and give the diffusion config `vae.diffusers_path` instead.

  python -m jaxdeg.main --config=configs/gendeg_vae.py --workdir=runs/vae
  python -m jaxdeg.main --config=configs/gendeg_vae.py --workdir=runs/vae --mode=evaluate

By default the pairs are the bundled sample photos degraded on the device with GenDeg's six types;
for real data replace `data.sources`, e.g.
  dict(kind="folder", path="/data/photos")                         clean photos (degraded on device)
  dict(kind="paired", path="/data/RESIDE/ITS", layout="sots")      real pairs (all sources paired)
Variants: `:tiny` (32² crops, a very small model: CPU tests).
"""
import ml_collections
from ml_collections import config_dict

from jaxdeg.recipes import unknown_variant
from jaxdeg.tasks.gendeg_data import data_config, pairs_config
from jaxdeg.train.defaults import base_config


def get_config(variant=None):
  c = base_config()
  c.task = "vae"

  # diffusers' AutoencoderKL fields; these are SD-1.x's
  c.model = ml_collections.ConfigDict(dict(
      block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
      scaling_factor=0.18215, mid_attention=True, remat=False, dtype="float32"))
  c.data = data_config(256)
  c.pairs = pairs_config()

  c.loss = ml_collections.ConfigDict()
  c.loss.kl_weight = 1e-6  # SD's
  # LPIPS (off by default) needs ImageNet VGG weights: local files, read once when the task is built
  # (.pth needs torch; .npz copies with the same keys do not); see jaxdeg.models.perceptual
  c.loss.vgg16_weights = config_dict.placeholder(str)  # torchvision's vgg16 state dict
  c.loss.lpips_weights = config_dict.placeholder(str)  # the lpips package's weights/v0.1/vgg.pth
  c.loss.gan_weight = 0.0     # > 0: SD's patch-GAN discriminator (SD: 0.5, adaptive); 0 = off
  c.loss.gan_start = 50_001   # the step the discriminator joins (SD kl-f8's disc_start)
  c.loss.gan_width = 64
  c.loss.gan_layers = 3
  c.loss.lpips_weight = 1.0  # SD's perceptual_weight, added to every pixel's L1; 0 turns LPIPS off

  # SD's first stage: Adam(0.5, 0.9); the learning rate here is a choice for batch 8
  c.optimizer = ml_collections.ConfigDict(dict(learning_rate=1e-4, warmup_steps=1000, b1=0.5, b2=0.9,
                                               weight_decay=0.0, grad_clip=1.0))
  c.train.update(steps=200_000, batch_size=8, ema_decay=0.0, log_every=100, eval_every=5000, checkpoint_every=5000)
  c.eval.update(batch_size=8, grid_name="vae.png", grid_rows=4)

  if variant == "tiny":
    c.model.block_out_channels = (32, 32)
    c.model.layers_per_block = 1
    c.model.norm_num_groups = 8
    c.model.mid_attention = False  # compiles faster on CPU
    c.data = data_config(32)
    c.pairs = pairs_config(("haze", "low_light"))
    c.optimizer.update(learning_rate=2e-3, warmup_steps=0, b1=0.9, b2=0.99)
    c.train.update(steps=30, log_every=10, eval_every=30, checkpoint_every=30)
    c.eval.grid_rows = 2
  elif variant:
    raise unknown_variant("configs/gendeg_vae.py", variant, ["tiny"])
  return c
