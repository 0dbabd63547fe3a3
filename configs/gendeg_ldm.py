"""GenDeg stage 2: the degradation-conditioned latent diffusion model (SD-1.x UNet, 8 input channels),
trained from scratch on top of a frozen VAE.

  python -m jaxdeg.main --config=configs/gendeg_ldm.py --workdir=runs/ldm \\
      --config.vae.workdir=runs/vae            # a `vae` task run (configs/gendeg_vae.py)
  # or --config.vae.diffusers_path=/models/sd-v1-5 (a diffusers folder with vae/)
  # from SD-1.5 as the paper (UNet and VAE): --config.init_weights.path=v1-5-pruned-emaonly.safetensors
  # GenDeg's CLIP text conditioning: --config.context.text_encoder=clip \\
  #     --config.context.text_encoder_weights=/models/sd-v1-5

Pairs: the bundled sample photos degraded on the device (GenDeg's six types, random intensity);
for real pairs give `data.sources` of kind paired/tfds/array_record (labels 'haze', 'rain', 'snow',
'motion_blur', 'low_light', 'raindrop' select the type tokens; others train as the null type).
Values marked (GenDeg) follow the official code (github.com/sudraj2002/GenDeg); "earlier jaxdeg" names
the option that reproduces jaxdeg's behaviour before it followed that code; other values are choices.
Variants: `:tiny` (32² crops, very small UNet and VAE: CPU tests; needs `vae.workdir`).
"""
import ml_collections
from ml_collections import config_dict

from jaxdeg.models.ldm.conditioning import DEGRADATION_TYPES
from jaxdeg.recipes import unknown_variant
from jaxdeg.tasks.gendeg_data import data_config, pairs_config
from jaxdeg.train.defaults import base_config


def get_config(variant=None):
  c = base_config()
  c.task = "ldm"

  c.vae = ml_collections.ConfigDict()
  c.vae.workdir = config_dict.placeholder(str)         # a `vae` task run: its latest checkpoint
  c.vae.diffusers_path = config_dict.placeholder(str)  # or a diffusers AutoencoderKL folder
  c.vae.use_ema = True                                 # the run's EMA params when it kept them
  c.vae.scaling_factor = 0.18215                       # (GenDeg, SD)
  c.vae.dtype = "float32"
  c.vae.norm_num_groups = 32                           # of a VAE read from init_weights.path (SD's)

  # Start from Stable Diffusion 1.5 as GenDeg does: a CompVis single file (.safetensors, or a .ckpt
  # with allow_unsafe_pickle=True: unpickling runs code from the file). The UNet is read from it
  # (conv_in widened 4 → 8 with zeros), the frozen VAE too unless vae.workdir / vae.diffusers_path
  # name another; for CLIP text give the same file as context.text_encoder_weights (frozen).
  c.init_weights = ml_collections.ConfigDict(dict(path=config_dict.placeholder(str), allow_unsafe_pickle=False))

  # SD-1.x's UNet (GenDeg): diffusers' UNet2DConditionModel fields
  c.model = ml_collections.ConfigDict(dict(
      in_channels=8, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
      attention_levels=(True, True, True, False), num_heads=8, cross_attention_dim=768, norm_num_groups=32,
      remat=True, dtype="float32"))  # GenDeg: fp32 with gradient checkpointing
  c.context = ml_collections.ConfigDict(dict(
      context_len=77,                # CLIP's token count (GenDeg)
      types=DEGRADATION_TYPES,
      # '' = learned type tokens (from scratch); 'clip' = frozen CLIP ViT-L/14 on GenDeg's prompt per
      # type (GenDeg), from text_encoder_weights: a diffusers folder (text_encoder/, tokenizer/) or an
      # SD-1.x single file; vocabulary: CLIP's BPE files if not next to the weights
      text_encoder="",
      text_encoder_weights=config_dict.placeholder(str),
      vocabulary=config_dict.placeholder(str),
      stats_columns_init="uniform",   # torch Linear default on the μσ columns (GenDeg)
      # Linear(129 → L): 'torch' = torch Linear's default U(±1/√129) weight and bias (GenDeg);
      # 'default' = flax's lecun-normal, zero bias (earlier jaxdeg); 'ordinal' for short runs
      stats_proj_init="torch"))
  c.diffusion = ml_collections.ConfigDict(dict(
      beta_schedule="scaled_linear", num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
      prediction="epsilon"))  # (GenDeg)
  c.conditioning = ml_collections.ConfigDict(dict(
      dropout=0.05,      # r < p: no text+μσ; p..2p: none of them; 2p..3p: no image (GenDeg)
      stats_size=256))   # pairs made on the device: μ, σ measured on stats_size² resizes of the crop

  c.data = data_config(256)  # GenDeg trains at 256², horizontal flips
  # (GenDeg) every image resized whole to 256² (Lanczos) and μ/σ of the pair measured on that, then
  # the 256² crop (all of it) and flip; no image is too small. 0 = random 256² crops at the images'
  # own resolution with μ/σ of the crop, smaller images skipped (earlier jaxdeg).
  c.data.resize = 256
  c.data.latent_cache = ""             # a folder written by --mode=cache_latents: train without the VAE
  c.data.latent_cache_batches = 2000   # how many training batches --mode=cache_latents encodes
  c.pairs = pairs_config()

  c.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, new_layers_lr_multiplier=10.0, warmup_steps=0,  # constant, 10× (GenDeg)
      b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2,  # torch AdamW's defaults (GenDeg)
      grad_clip=0.0))  # no clipping (GenDeg); earlier jaxdeg: 1.0 (global norm)
  c.train.steps = 100_000  # batches: 25,000 optimizer updates at 4× accumulation
  # (GenDeg) 16 per GPU × 2 GPUs = 32 per batch, an update every 4 batches: 128 per update.
  # Earlier jaxdeg: batch_size=64, accumulate_steps=1.
  c.train.batch_size = 32
  c.train.accumulate_steps = 4
  c.train.ema_decay = 0.9999  # (GenDeg)
  # (GenDeg) LitEma: decay min(0.9999, (1 + n) / (10 + n)) at the n-th update, over the UNet only
  # (the projections' EMA copy is their trained value). Earlier jaxdeg: False, ().
  c.train.ema_warmup = True
  c.train.ema_exclude = ("context",)
  c.train.log_every = 100
  c.train.eval_every = 5000
  c.train.checkpoint_every = 5000

  c.eval.batch_size = 8
  c.eval.timesteps = (100, 500, 900)   # denoising MSE at these, fixed noise per example
  c.eval.sampler = "euler_ancestral"   # (GenDeg)
  c.eval.sigma_interp = "log"          # k-diffusion's σ grid, as GenDeg samples
  c.eval.sample_steps = 25             # GenDeg: 100; fewer for a quick look
  c.eval.text_scale = 7.5              # (GenDeg)
  c.eval.image_scale = 1.5             # (GenDeg)
  c.eval.grid_name = "ldm.png"
  c.eval.grid_rows = 4

  if variant == "tiny":
    c.model.block_out_channels = (32,)
    c.model.layers_per_block = 1
    c.model.attention_levels = (False,)  # one level; cross-attention in the mid block only
    c.model.num_heads = 2
    c.model.cross_attention_dim = 32
    c.model.norm_num_groups = 8
    c.model.remat = False
    c.context.context_len = 4
    c.conditioning.stats_size = 32
    c.data = data_config(32)
    c.data.resize = 32
    c.data.latent_cache, c.data.latent_cache_batches = "", 4
    c.pairs = pairs_config(("haze", "low_light"))
    c.optimizer.learning_rate = 1e-3
    # Adam's first update lr·g/(|g| + ε) jumps for gradients near ε; a larger ε keeps it smooth, so
    # rounding-level gradient differences between meshes stay rounding-level in the params
    c.optimizer.eps = 1e-5
    c.train.update(batch_size=8, accumulate_steps=1, steps=30, ema_decay=0.9, log_every=10, eval_every=0,
                   checkpoint_every=30)
    c.eval.sample_steps = 3
    c.eval.timesteps = (500,)
    c.eval.grid_rows = 2
  elif variant:
    raise unknown_variant("configs/gendeg_ldm.py", variant, ["tiny"])
  return c
