"""Noise families: additive Gaussian, Poisson (shot), speckle (multiplicative) and pink (1/f).

Every family draws its random field independently of the intensity and then scales it, so for a
fixed key the damage grows monotonically with the intensity. `gray` (0..1) blends towards one
noise plane shared by the three channels (Real-ESRGAN draws gray noise with p = 0.4).
"""
import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, finish, random_normal
from jaxdeg.degrade.registry import register


def _mix_gray(field, gray, kn):
  # Without a `gray` override (0) the mix is the field itself, exactly: skip the pass (XLA would
  # evaluate the first channel's noise twice in it).
  if not kn.given("gray"):
    return field
  return gray * field[..., :1] + (1.0 - gray) * field


@register("gaussian_noise")
def gaussian_noise(key, image, intensity, **overrides):
  """Additive white Gaussian noise; sigma = 0.2·intensity (51/255 at 1, the BSD68 maximum)."""
  kn = Knobs("gaussian_noise", overrides, ("sigma", "gray"))
  sigma = kn("sigma", lambda: 0.2 * intensity)
  gray = kn("gray", 0.0)
  noise = _mix_gray(random_normal(key, image.shape), gray, kn)
  return finish(image + sigma * noise), {"sigma": sigma, "gray": gray}


@register("poisson_noise")
def poisson_noise(key, image, intensity, **overrides):
  """Shot noise as in BasicSR's `random_add_poisson_noise`: (Poisson(256·x)/256 − x)·scale.

  scale = 3·intensity (Real-ESRGAN samples 0.05–3). Drawn as N(0, x/256)·scale: at 256 levels per
  unit the Gaussian form matches Poisson's variance exactly and its shape to within a few percent,
  and it costs one normal draw instead of a rejection loop per pixel.
  """
  kn = Knobs("poisson_noise", overrides, ("scale", "gray"))
  scale = kn("scale", lambda: 3.0 * intensity)
  gray = kn("gray", 0.0)
  level = jnp.broadcast_to(image.mean(-1, keepdims=True), image.shape) * gray + image * (1.0 - gray)
  noise = _mix_gray(random_normal(key, image.shape), gray, kn)
  noise = noise * jnp.sqrt(jnp.maximum(level, 0.0) / 256.0)
  return finish(image + scale * noise), {"scale": scale, "gray": gray}


@register("speckle_noise")
def speckle_noise(key, image, intensity, **overrides):
  """Multiplicative noise x·(1 + n), n ~ N(0, sigma²); sigma = 0.4·intensity."""
  kn = Knobs("speckle_noise", overrides, ("sigma", "gray"))
  sigma = kn("sigma", lambda: 0.4 * intensity)
  gray = kn("gray", 0.0)
  noise = _mix_gray(random_normal(key, image.shape), gray, kn)
  return finish(image * (1.0 + sigma * noise)), {"sigma": sigma, "gray": gray}


def pink_field(key, shape, alpha):
  """Unit-variance noise with power spectrum ∝ 1/f^alpha per channel (alpha = 1: pink)."""
  h, w, c = shape
  white = random_normal(key, shape)
  fy = jnp.fft.fftfreq(h)[:, None]
  fx = jnp.fft.rfftfreq(w)[None, :]
  f = jnp.sqrt(fy ** 2 + fx ** 2)
  amp = jnp.where(f > 0, jnp.power(jnp.maximum(f, 1.0 / max(h, w)), -alpha / 2.0), 0.0)
  field = jnp.fft.irfft2(jnp.fft.rfft2(white, axes=(0, 1)) * amp[:, :, None], s=(h, w), axes=(0, 1))
  return field / jnp.maximum(field.std(axis=(0, 1), keepdims=True), 1e-6)


@register("pink_noise")
def pink_noise(key, image, intensity, **overrides):
  """Additive 1/f^alpha noise (large blotches as well as fine grain); sigma = 0.15·intensity, alpha = 1."""
  kn = Knobs("pink_noise", overrides, ("sigma", "alpha", "gray"))
  sigma = kn("sigma", lambda: 0.15 * intensity)
  alpha = kn("alpha", 1.0)
  gray = kn("gray", 0.0)
  noise = _mix_gray(pink_field(key, image.shape, alpha), gray, kn)
  return finish(image + sigma * noise), {"sigma": sigma, "alpha": alpha, "gray": gray}
