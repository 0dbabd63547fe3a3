"""GenDeg's UNet vs diffusers (PyTorch), same config, same weights (converted by our importer):

- train step: ε-MSE forward + backward + AdamW update, 8-channel input, batch 2;
- sampling: 50 Euler-ancestral steps with GenDeg's dual classifier-free guidance. diffusers is run
  the InstructPix2Pix way (the three conditionings concatenated into one UNet call per step, eager,
  `EulerAncestralDiscreteScheduler`); jaxdeg compiles the whole loop once (`lax.scan`) and batches
  the three conditionings the same way.

The UNet is an SD-1.x layout at reduced width so a CPU finishes (channels 64/128/256, attention at
the two highest resolutions, 8 heads, context 77 × 128), latents 16² (128² images). Timings are
interleaved and the fastest repetition of each side is reported; compilation is excluded and noted.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import timing
from jaxdeg.diffusion import euler_ancestral, guidance, make_schedule
from jaxdeg.interop import diffusers as imp
from jaxdeg.models.ldm.unet import UNet

UNET = dict(block_out_channels=(64, 128, 256), layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=128, attention_head_dim=8, norm_num_groups=32)
BATCH, LATENT, CONTEXT = 2, 16, 77
STEPS, TEXT_SCALE, IMAGE_SCALE = 50, 7.5, 1.5


def _inputs():
  rng = np.random.default_rng(0)
  return dict(x=rng.normal(size=(BATCH, LATENT, LATENT, 8)).astype(np.float32),
              t=rng.integers(0, 1000, BATCH).astype(np.float32),
              ctx=rng.normal(size=(BATCH, CONTEXT, 128)).astype(np.float32),
              null_ctx=rng.normal(size=(BATCH, CONTEXT, 128)).astype(np.float32),
              target=rng.normal(size=(BATCH, LATENT, LATENT, 4)).astype(np.float32),
              noise=rng.normal(size=(BATCH, LATENT, LATENT, 4)).astype(np.float32))


def _torch_model():
  import torch
  from diffusers import UNet2DConditionModel
  torch.manual_seed(0)
  return UNet2DConditionModel(sample_size=LATENT, in_channels=8, out_channels=4, **UNET)


def _ours(tu, d):
  model = UNet(**imp.unet_kwargs(dict(tu.config), in_channels=8))
  target = jax.eval_shape(model.init, jax.random.key(0), d["x"], d["t"], d["ctx"])
  params = jax.tree.map(jnp.asarray, imp.unet_params(tu.state_dict(), target))
  tx = optax.adamw(1e-4)
  box = {"state": (params, tx.init(params))}

  def train(state, x, t, ctx, y):
    p, opt = state
    loss, g = jax.value_and_grad(lambda p: jnp.mean((model.apply({"params": p}, x, t, ctx) - y) ** 2))(p)
    upd, opt = tx.update(g, opt, p)
    return (optax.apply_updates(p, upd), opt), loss

  train = jax.jit(train, donate_argnums=0)
  schedule = make_schedule()

  @jax.jit
  def sample(p, image, ctx, null_ctx, noise, key):
    def apply_fn(x, t, cond):
      img, c = cond
      return model.apply({"params": p}, jnp.concatenate([x, img], -1), jnp.broadcast_to(t, (x.shape[0],)), c)
    fn = guidance.dual(apply_fn, (image, ctx), (image, null_ctx), (jnp.zeros_like(image), null_ctx),
                       TEXT_SCALE, IMAGE_SCALE)
    return euler_ancestral(fn, noise, key, schedule, STEPS)

  image = d["x"][..., 4:]

  def train_step():
    box["state"], loss = train(box["state"], d["x"], d["t"], d["ctx"], d["target"])
    jax.block_until_ready(loss)

  def sample_step():
    jax.block_until_ready(sample(box["state"][0], image, d["ctx"], d["null_ctx"], d["noise"], jax.random.key(1)))

  return train_step, sample_step


def _peer(tu, d):
  import torch
  from diffusers import EulerAncestralDiscreteScheduler
  torch.set_num_threads(os.cpu_count())

  def t_(a):
    a = np.asarray(a, np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if a.ndim == 4 else a))

  x, t, ctx, y = t_(d["x"]), torch.from_numpy(d["t"]), t_(d["ctx"]), t_(d["target"])
  opt = torch.optim.AdamW(tu.parameters(), lr=1e-4)

  def train_step():
    tu.train()
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(tu(x, t, encoder_hidden_states=ctx).sample, y)
    loss.backward()
    opt.step()

  sched = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                          num_train_timesteps=1000)
  image = x[:, 4:]
  image3 = torch.cat([image, image, torch.zeros_like(image)])
  ctx3 = torch.cat([ctx, t_(d["null_ctx"]), t_(d["null_ctx"])])
  noise = t_(d["noise"])

  def sample_step():
    tu.eval()
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
      sched.set_timesteps(STEPS)
      latents = noise * sched.init_noise_sigma
      for step_t in sched.timesteps:
        inp = torch.cat([sched.scale_model_input(torch.cat([latents] * 3), step_t), image3], dim=1)
        eps = tu(inp, step_t, encoder_hidden_states=ctx3).sample
        text, img, uncond = eps.chunk(3)
        eps = uncond + TEXT_SCALE * (text - img) + IMAGE_SCALE * (img - uncond)
        latents = sched.step(eps, step_t, latents, generator=gen).prev_sample

  return train_step, sample_step, f"diffusers + PyTorch {torch.__version__} eager ({torch.get_num_threads()} threads)"


def run(quick: bool):
  reps = 2 if quick else 4
  d = _inputs()
  tu = _torch_model()
  ours_train, ours_sample = _ours(tu, d)
  peer_train, peer_sample, peer_name = _peer(tu, d)
  platform = jax.devices()[0].platform
  rows = []
  for what, ours, peer in (("UNet train step (ε-MSE, AdamW), 8-channel input", ours_train, peer_train),
                           (f"sampling, {STEPS} Euler-ancestral steps, dual guidance", ours_sample, peer_sample)):
    compile_s = timing.seconds(ours)
    peer()  # warm caches
    t_ours, t_peer = timing.interleaved(ours, peer, reps=reps)
    params = sum(p.numel() for p in tu.parameters())
    rows.append({
        "figure": f"GenDeg {what}, latents {LATENT}² (128² images), batch {BATCH}, {platform.upper()}",
        **timing.figures(BATCH, t_ours, t_peer), "peer_name": peer_name, "unit": "images/s",
        "higher_is_better": True,
        "notes": (f"SD-1.x layout at channels {UNET['block_out_channels']} ({params / 1e6:.1f} M params), same "
                  f"weights via jaxdeg.interop.diffusers; jaxdeg compile {compile_s:.0f} s excluded; "
                  f"{reps} interleaved runs each; targets (≥ 2× sampling, ≥ 1.2× training) are for GPU"),
    })
  return rows
