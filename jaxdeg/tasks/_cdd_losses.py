"""Losses of the universal degradation model (images in [-1, 1], NHWC, batch means).

- `colour_loss`: L1 between the two images after per-image min-max normalisation and a 45×45,
  σ = 50 Gaussian blur: only the global colour cast and brightness layout count.
- `diversity_loss`: the contrast-structure term of SSIM between two samples of the generator,
  (2|σ_xy| + C)/(σ_x² + σ_y² + C), C = 0.12, 11×11 Gaussian window (σ 1.5), reflect borders;
  minimised, so two noise draws must differ in structure. (The official window's coordinates run
  from −6 to 5 in 11 steps, off centre; this one is centred.)
- `critic_loss`: WGAN-GP: α·(D(ŷ) − D(y)) + α·λ·(‖∇D(ε·y + (1 − ε)·ŷ)‖ − 1)², one ε per image.
"""
import jax
import jax.numpy as jnp

from jaxdeg.metrics.image_quality import gaussian_taps
from jaxdeg.tasks.cdd_ops import blur
from jaxdeg.tasks.ranges import to_image_range

COLOUR_TAPS = gaussian_taps(45, 50.0)
DIVERSITY_TAPS = gaussian_taps(11, 1.5)
DIVERSITY_C = 0.12


def l1_loss(a, b):
  return jnp.mean(jnp.abs(a - b))


def _minmax(x, eps=1e-6):
  lo = x.min(axis=(1, 2, 3), keepdims=True)
  hi = x.max(axis=(1, 2, 3), keepdims=True)
  return (x - lo) / jnp.maximum(hi - lo, eps)  # eps: a flat image would divide by zero


def colour_loss(a, b):
  """Mean |blur(minmax(a)) − blur(minmax(b))| on [0, 1] images made from [-1, 1] inputs."""
  na, nb = _minmax(to_image_range(a)), _minmax(to_image_range(b))
  return jnp.mean(jnp.abs(blur(na, COLOUR_TAPS) - blur(nb, COLOUR_TAPS)))


def diversity_loss(a, b):
  """Mean windowed contrast-structure similarity of two generator samples (lower = more diverse)."""
  mu_a, mu_b = blur(a, DIVERSITY_TAPS), blur(b, DIVERSITY_TAPS)
  var_a = blur(a * a, DIVERSITY_TAPS) - mu_a * mu_a
  var_b = blur(b * b, DIVERSITY_TAPS) - mu_b * mu_b
  cov = blur(a * b, DIVERSITY_TAPS) - mu_a * mu_b
  return jnp.mean((2.0 * jnp.abs(cov) + DIVERSITY_C) / (var_a + var_b + DIVERSITY_C))


def gradient_penalty(critic_fn, real, fake, key):
  """Mean (‖∇_u D(u)‖₂ − 1)² at u = ε·real + (1 − ε)·fake, ε ~ U(0, 1) per image."""
  eps = jax.random.uniform(key, (real.shape[0], 1, 1, 1), real.dtype)
  mixed = eps * real + (1.0 - eps) * fake
  grads = jax.grad(lambda u: jnp.sum(critic_fn(u)))(mixed)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def critic_loss(critic_fn, real, fake, key, alpha=1.0, gp_weight=10.0):
  """(total, terms) of the critic's WGAN-GP loss; `fake` carries no gradient to the generator."""
  fake = jax.lax.stop_gradient(fake)
  scores = critic_fn(jnp.concatenate([real, fake]))  # one call: the critic has no batch coupling
  d_real, d_fake = jnp.mean(scores[:real.shape[0]]), jnp.mean(scores[real.shape[0]:])
  gp = gradient_penalty(critic_fn, real, fake, key)
  total = alpha * (d_fake - d_real) + alpha * gp_weight * gp
  return total, {"critic_loss": total, "critic_wasserstein": d_real - d_fake, "gradient_penalty": gp}


__all__ = ["l1_loss", "colour_loss", "diversity_loss", "gradient_penalty", "critic_loss"]
