"""Rain: three layers of streaks (near, middle, far) over a light veil of mist.

Each layer scatters streak seeds (a Bernoulli field of the layer's density) and smears them with a
line kernel: a segment at the rain angle with a Gaussian cross-section. Near layers have longer,
wider, brighter and sparser streaks. Streaks are alpha-composited towards a bright rain colour.
Lengths scale with the image size (`length` is in pixels of a 256-pixel image).

The smearing is a circular convolution done in the Fourier domain with the kernels' analytic
spectra (wrap-around is harmless for a random field, and no kernel FFTs are needed).
"""
import math

import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, Stream, finish
from jaxdeg.degrade.registry import register

# near → far: relative length, cross-section sigma (px at 256²), brightness, share of the seeds
LAYERS = ((1.0, 0.9, 0.9, 0.15), (0.6, 0.6, 0.7, 0.35), (0.35, 0.45, 0.5, 0.5))
MAX_LENGTH = 32.0    # px at 256²: the near layer at intensity 1
MAX_DENSITY = 0.012  # streak seeds per pixel, all layers together, at intensity 1


def rotated_frequencies(shape, angle):
  """rfft2 frequency grid (cycles/px) along and across the direction `angle` (from vertical)."""
  fy = jnp.fft.fftfreq(shape[0])[:, None]
  fx = jnp.fft.rfftfreq(shape[1])[None, :]
  s, c = jnp.sin(angle), jnp.cos(angle)
  return fx * s + fy * c, fx * c - fy * s


def sinc_along(shape, scale, angle):
  """sinc(scale·along) on the rfft2 grid from 1-D sines: with a = π·scale·cos(angle)·fy and
  b = π·scale·sin(angle)·fx, sin(a + b) = sin a·cos b + cos a·sin b is a rank-2 matmul. (Per-element
  sines were most of the cost of the spectra; XLA fuses elementwise 1-D sines into a broadcast
  product and evaluates them per element again, a dot keeps them 1-D.) The denominator a + b is
  summed exactly (two-sum) to match the numerator near the zero line, where a Taylor term takes over."""
  fy = jnp.fft.fftfreq(shape[0])
  fx = jnp.fft.rfftfreq(shape[1])
  a = (math.pi * scale * jnp.cos(angle)) * fy
  b = (math.pi * scale * jnp.sin(angle)) * fx
  num = jnp.stack([jnp.sin(a), jnp.cos(a)], 1) @ jnp.stack([jnp.cos(b), jnp.sin(b)], 0)
  a, b = a[:, None], b[None, :]
  z = a + b
  bb = z - a
  z = z + ((a - (z - bb)) + (b - bb))
  small = jnp.abs(z) < 1e-2
  return jnp.where(small, 1.0 - jnp.square(z) / 6.0, num / jnp.where(small, 1.0, z))


def streak_spectrum(shape, length, width, angle):
  """Spectrum of a peak-1 streak: a `length`-px segment (soft 1-px ends: box ⊛ box) at `angle`,
  with a Gaussian cross-section of std `width`."""
  _, across = rotated_frequencies(shape, angle)
  return (length * sinc_along(shape, length, angle) * sinc_along(shape, 1.0, angle) *
          math.sqrt(2 * math.pi) * width * jnp.exp(-2 * math.pi ** 2 * jnp.square(width * across)))


def layered_particles(rs, shape, densities, brightness, spectra):
  """Sum of seed fields (one per layer, brightness-jittered), each convolved with its layer's kernel
  given by its rfft2 spectrum `spectra[l]`."""
  n = len(spectra)
  u = rs.field_uniform((n,) + shape)
  amp = rs.field_uniform((n,) + shape, 0.5, 1.0)
  seeds = jnp.where(u < densities[:, None, None], amp * brightness[:, None, None], 0.0)
  # An explicit sum over the few layers: as a reduction XLA fused the spectra into a slow loop.
  f = jnp.fft.rfft2(seeds)
  return jnp.fft.irfft2(sum(f[l] * spectra[l] for l in range(n)), s=shape)


@register("rain")
def rain(key, image, intensity, **overrides):
  """Streak density 0.012·intensity per pixel, near-streak length (0.4 + 0.6·intensity)·32 px at 256²,
  angle uniform in ±20° from vertical, opacity 0.8, mist veil 0.2·intensity."""
  kn = Knobs("rain", overrides, ("density", "length", "angle", "opacity", "veil"))
  h, w = image.shape[:2]
  px = min(h, w) / 256.0
  rs = Stream(key, 8)
  random_angle = rs.uniform(-0.35, 0.35)
  jitter = rs.uniform(-0.05, 0.05, (len(LAYERS),))
  density = kn("density", lambda: MAX_DENSITY * intensity)
  length = kn("length", lambda: MAX_LENGTH * (0.4 + 0.6 * intensity))
  angle = kn("angle", random_angle)
  opacity = kn("opacity", 0.8)
  veil = kn("veil", lambda: 0.2 * intensity)
  spectra = jnp.stack([streak_spectrum((h, w), length * rel * px, max(sig * px, 0.35), angle + j)
                       for (rel, sig, _, _), j in zip(LAYERS, jitter)])
  densities = density * jnp.asarray([l[3] for l in LAYERS])
  brightness = jnp.asarray([l[2] for l in LAYERS])
  streaks = jnp.clip(layered_particles(rs, (h, w), densities, brightness, spectra), 0.0, 1.0)
  alpha = (opacity * streaks)[..., None]
  misty = image * (1.0 - veil) + veil * 0.75
  out = misty * (1.0 - alpha) + alpha * 0.92
  return finish(out), {"density": density, "length": length, "angle": angle, "opacity": opacity, "veil": veil}
