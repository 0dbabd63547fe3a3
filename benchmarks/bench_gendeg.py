"""GenDeg's released pipeline, sampling: `jaxdeg gendeg`'s model (jaxdeg.gendeg_cli.GenDeg: VAE
encode of the clean image, μσ context, k-diffusion Euler-ancestral with dual guidance, the three
conditionings in one batched UNet call per step, VAE decode) against the official way in PyTorch
(benchmarks/peers/torch_gendeg.py: run_single.py's k-diffusion loop and CFGDenoiser, eager, on
diffusers' UNet and VAE), same weights, same noises.

The released model is SD-1.5's UNet (860 M parameters) at 512² with 100 steps; a 2-core CPU cannot
sample that in a benchmark's time, so the CPU figure uses an SD-1.x layout at reduced width
(channels 64/128/256, context 77 × 128), 128² images, 20 steps. `GENDEG_BENCH_FULL=1` runs the
released sizes (SD-1.5 UNet and VAE, 512², 100 steps, bfloat16 for jaxdeg) where an accelerator is.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from jaxdeg.gendeg_cli import GenDeg
from jaxdeg.interop import compvis
from jaxdeg.interop import diffusers as imp

SMALL = dict(unet=dict(block_out_channels=(64, 128, 256), layers_per_block=2,
                       down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                       cross_attention_dim=128, attention_head_dim=8, norm_num_groups=32),
             vae=dict(block_out_channels=(32, 64, 64, 64), layers_per_block=1, norm_num_groups=32,
                      down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4),
             size=128, steps=20, batch=1, context=128)
FULL = dict(unet=dict(cross_attention_dim=768, attention_head_dim=8),  # diffusers' defaults are SD-1.x's
            vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                     down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4),
            size=512, steps=100, batch=1, context=768)
CONTEXT_LEN, TEXT_SCALE, IMAGE_SCALE = 77, 7.5, 1.5


def _torch_models(s):
  import torch
  from diffusers import AutoencoderKL, UNet2DConditionModel
  torch.manual_seed(0)
  unet = UNet2DConditionModel(sample_size=s["size"] // 8, in_channels=8, out_channels=4, **s["unet"]).eval()
  vae = AutoencoderKL(**s["vae"], latent_channels=4).eval()
  projections = {"stats_proj.weight": torch.randn(CONTEXT_LEN, 129) * 0.05, "stats_proj.bias": torch.zeros(CONTEXT_LEN),
                 "cc_projection.weight": torch.randn(s["context"], s["context"] + 2) * 0.05,
                 "cc_projection.bias": torch.zeros(s["context"])}
  return unet, vae, projections


def _ours(unet, vae, projections, s, dtype):
  """jaxdeg's GenDeg on the same weights (imported from the diffusers state dicts)."""
  from jaxdeg.models.ldm import AutoencoderKL, UNet
  ju = UNet(**imp.unet_kwargs(dict(unet.config), in_channels=8), dtype=dtype)
  jv = AutoencoderKL(**imp.vae_kwargs(dict(vae.config)), dtype=dtype)
  f, lat = 8, s["size"] // 8
  u_target = jax.eval_shape(ju.init, jax.random.key(0), jnp.zeros((1, lat, lat, 8)), jnp.zeros((1,)),
                            jnp.zeros((1, 1, s["context"])))
  v_target = jax.eval_shape(jv.init, jax.random.key(0), jnp.zeros((1, f, f, 3)))
  weights = compvis.Weights(
      path="(benchmark)", unet=ju, unet_params=imp.unet_params(unet.state_dict(), u_target), vae=jv,
      vae_params=imp.vae_params(vae.state_dict(), v_target),
      context=compvis.context_params({k: v.numpy() for k, v in projections.items()}), text={}, used_ema=False,
      scaling_factor=0.18215)
  return GenDeg(weights, steps=s["steps"], text_scale=TEXT_SCALE, image_scale=IMAGE_SCALE, dtype=dtype)


def _inputs(s):
  rng = np.random.default_rng(0)
  b, lat, f32 = s["batch"], s["size"] // 8, lambda a: np.asarray(a, np.float32)
  return dict(clean=f32(rng.uniform(0, 1, (b, s["size"], s["size"], 3))),
              text=f32(rng.normal(size=(b, CONTEXT_LEN, s["context"]))),
              null_text=f32(rng.normal(size=(CONTEXT_LEN, s["context"]))),
              mu_bins=np.full((b,), 40, np.int32), sigma_bins=np.full((b,), 20, np.int32),
              noise=f32(rng.normal(size=(b, lat, lat, 4))), step_noise=f32(rng.normal(size=(s["steps"], b, lat, lat, 4))))


def run(quick: bool):
  import torch
  from benchmarks.peers import torch_gendeg
  torch.set_num_threads(os.cpu_count())
  full = os.environ.get("GENDEG_BENCH_FULL") == "1"
  s = FULL if full else SMALL
  unet, vae, projections = _torch_models(s)
  model = _ours(unet, vae, projections, s, jnp.bfloat16 if full else jnp.float32)
  d = _inputs(s)

  def ours():
    jax.block_until_ready(model(**d))

  def peer():
    torch_gendeg.sample(unet, vae, projections, **d, text_scale=TEXT_SCALE, image_scale=IMAGE_SCALE)

  compile_s = timing.seconds(ours)
  # same weights, same noises: the two sides compute the same images (float32 runs)
  diff = None if full else float(np.abs(np.asarray(model(**d)) - torch_gendeg.sample(
      unet, vae, projections, **d, text_scale=TEXT_SCALE, image_scale=IMAGE_SCALE)).max())
  reps = 2 if quick else 3
  t_ours, t_peer = timing.interleaved(ours, peer, reps=reps)
  params = sum(p.numel() for p in unet.parameters())
  platform = jax.devices()[0].platform
  return [{
      "figure": (f"GenDeg released pipeline, sampling {s['steps']} Euler-ancestral steps with dual guidance, "
                 f"{s['size']}², batch {s['batch']}, {platform.upper()}"),
      **timing.figures(s["batch"], t_ours, t_peer),
      "peer_name": f"run_single.py's k-diffusion loop, diffusers models, PyTorch {torch.__version__} eager "
                   f"({torch.get_num_threads()} threads)",
      "unit": "images/s", "higher_is_better": True,
      "notes": (f"UNet {params / 1e6:.1f} M params ({'SD-1.5' if full else 'SD-1.x layout, reduced width'}), VAE encode "
                f"+ decode included; same weights and noises{'' if diff is None else f', max abs difference {diff:.1e}'}; "
                f"{reps} interleaved runs; "
                f"jaxdeg compile {compile_s:.0f} s excluded"),
  }]
