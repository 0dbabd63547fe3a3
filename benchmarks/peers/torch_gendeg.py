"""GenDeg's sampling as the official `run_single.py` runs it, in PyTorch, on diffusers' UNet and VAE:
k-diffusion's `sample_euler_ancestral` with its `CompVisDenoiser` (σ grid by log-σ interpolation at
linspace(999, 0, n), σ → t by the inverse interpolation, input × 1/√(σ²+1), denoised = x − σ·ε) and
run_single.py's CFGDenoiser (the three conditionings in one batch,
ε(∅,∅) + s_T·[ε(I,T) − ε(I,∅)] + s_I·[ε(I,∅) − ε(∅,∅)]), written out so the initial noise and every
step's noise can be injected. The peer of jaxdeg's `GenDeg` in tests and benchmarks.
"""
import numpy as np
import torch
import torch.nn.functional as F


def nchw(a):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 3, 1, 2)))


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def k_diffusion_sigmas(alphas_cumprod, n):
  log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log()
  t = torch.linspace(len(log_sigmas) - 1, 0, n)
  low, high, w = t.floor().long(), t.ceil().long(), t.frac()
  return torch.cat([((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp(), torch.zeros(1)]), log_sigmas


def sigma_to_t(sigma, log_sigmas):
  log_sigma = sigma.log()
  dists = log_sigma - log_sigmas[:, None]
  low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=log_sigmas.shape[0] - 2)
  lo, hi = log_sigmas[low], log_sigmas[low + 1]
  w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
  return (1 - w) * low + w * (low + 1)


def sample(unet, vae, projections, clean, text, null_text, mu_bins, sigma_bins, noise, step_noise, *,
           text_scale=7.5, image_scale=1.5, scaling_factor=0.18215, corrector=None):
  """Images (B, H, W, 3) in [0, 1] from clean (B, H, W, 3) in [0, 1], CLIP embeddings text (B, L, D)
  and null_text (L, D), μ/σ bins (B,), noise (B, h, w, 4) and step_noise (steps, B, h, w, 4) (NHWC
  numpy); `projections`: GenDeg's {'stats_proj.weight', ..., 'cc_projection.bias'} tensors;
  `corrector`: run_single's structure corrector on [-1, 1] (clean ‖ generated), or None."""
  steps = len(step_noise)
  # CompVis's schedule: linear in √β, float64, stored as float32
  betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
  sigmas, log_sigmas = k_diffusion_sigmas(torch.cumprod(1 - betas, 0).float(), steps)
  b = clean.shape[0]
  p = projections

  def context(text, stats):
    s = F.linear(stats, p["stats_proj.weight"], p["stats_proj.bias"]).transpose(1, 2)
    return F.linear(torch.cat([text, s], -1), p["cc_projection.weight"], p["cc_projection.bias"])

  stats = torch.zeros(b, 2, 129)
  stats[torch.arange(b), 0, torch.as_tensor(mu_bins)] = 1
  stats[torch.arange(b), 1, torch.as_tensor(sigma_bins)] = 1
  null_stats = torch.zeros(b, 2, 129)
  null_stats[:, :, -1] = 1
  with torch.no_grad():
    image = vae.encode(nchw(clean * 2 - 1)).latent_dist.mode()
    cond = context(torch.from_numpy(np.asarray(text, np.float32)), stats)
    uncond = context(torch.from_numpy(np.asarray(null_text, np.float32))[None].repeat(b, 1, 1), null_stats)
    x = nchw(noise) * sigmas[0]
    for i in range(steps):
      s, s_to = sigmas[i], sigmas[i + 1]
      t = sigma_to_t(s.reshape(1), log_sigmas).repeat(3 * b)
      x3 = torch.cat([x] * 3)
      eps = unet(torch.cat([x3 / (s ** 2 + 1) ** 0.5, torch.cat([image, image, torch.zeros_like(image)])], 1), t,
                 encoder_hidden_states=torch.cat([cond, uncond, uncond])).sample
      c, ic, u = (x3 - eps * s).chunk(3)
      denoised = u + text_scale * (c - ic) + image_scale * (ic - u)
      up = min(s_to, (s_to ** 2 * (s ** 2 - s_to ** 2) / s ** 2) ** 0.5)
      down = (s_to ** 2 - up ** 2) ** 0.5
      x = x + (x - denoised) / s * (down - s)
      if s_to > 0:
        x = x + nchw(step_noise[i]) * up
    out = vae.decode(x / scaling_factor).sample.clamp(-1, 1)
    if corrector is not None:
      out = corrector(torch.cat([nchw(clean * 2 - 1), out], 1))
  return nhwc(((out + 1) / 2).clamp(0, 1))
