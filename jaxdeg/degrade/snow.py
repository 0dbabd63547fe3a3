"""Snow: flakes of three sizes, each smeared along its fall direction, over a bright veil.

Small flakes are many, faint and far; large ones few, bright and near, with the longest motion
trails. A flake is a Gaussian blob swept along a short segment (its motion during the exposure).
Sizes are in pixels of a 256-pixel image and scale with the image.
"""
import math

import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, Stream, finish
from jaxdeg.degrade.rain import layered_particles, rotated_frequencies, sinc_along
from jaxdeg.degrade.registry import register

# far → near: blob sigma (px at 256²), trail length (px), brightness, share of the flakes
LAYERS = ((0.6, 1.5, 0.6, 0.6), (1.2, 3.0, 0.8, 0.3), (2.2, 6.0, 1.0, 0.1))
MAX_DENSITY = 0.016  # flakes per pixel, all layers together, at intensity 1


def flake_spectrum(shape, sigma, trail, angle):
  """Spectrum of a Gaussian blob of std `sigma` swept over a `trail`-px segment at `angle`, scaled to
  the area of the peak-1 swept blob (2πσ² + √(2π)σ·trail) so flakes keep their brightness."""
  along, across = rotated_frequencies(shape, angle)
  area = 2 * math.pi * sigma ** 2 + math.sqrt(2 * math.pi) * sigma * trail
  return (area * jnp.exp(-2 * math.pi ** 2 * sigma ** 2 * (jnp.square(along) + jnp.square(across))) *
          sinc_along(shape, trail, angle))


@register("snow")
def snow(key, image, intensity, **overrides):
  """Flake density 0.016·intensity per pixel, fall angle uniform in ±30°, white veil (0.28–0.4)·intensity."""
  kn = Knobs("snow", overrides, ("density", "angle", "veil", "opacity"))
  h, w = image.shape[:2]
  px = min(h, w) / 256.0
  rs = Stream(key, 6)
  random_angle = rs.uniform(-0.5, 0.5)
  veil_share = rs.uniform(0.7, 1.0)
  density = kn("density", lambda: MAX_DENSITY * intensity)
  angle = kn("angle", random_angle)
  veil = kn("veil", lambda: 0.4 * intensity * veil_share)
  opacity = kn("opacity", 0.95)
  spectra = jnp.stack([flake_spectrum((h, w), max(sig * px, 0.4), trail * px, angle)
                       for sig, trail, _, _ in LAYERS])
  densities = density * jnp.asarray([l[3] for l in LAYERS])
  brightness = jnp.asarray([l[2] for l in LAYERS])
  flakes = jnp.clip(layered_particles(rs, (h, w), densities, brightness, spectra), 0.0, 1.0)
  alpha = (opacity * flakes)[..., None]
  veiled = image * (1.0 - veil) + veil * jnp.asarray([0.86, 0.88, 0.92])
  out = veiled * (1.0 - alpha) + alpha * 0.97
  return finish(out), {"density": density, "angle": angle, "veil": veil, "opacity": opacity}
