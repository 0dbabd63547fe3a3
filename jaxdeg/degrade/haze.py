"""Haze by the atmospheric scattering model I = J·t + A·(1 − t), t = exp(−beta·depth).

Depth is relative, in [0, 1]. Pass a map as the `depth` override (H×W, larger = farther) when you
have one. Otherwise it comes from a prior on the image itself:

  * colour attenuation prior (Zhu, Mai & Shao, TIP 2015): scene depth grows with brightness and
    falls with saturation, d = 0.121779 + 0.959710·v − 0.780245·s (v, s from HSV);
  * vertical position: in outdoor photos the top of the frame is usually farther away.

The two are averaged, normalised to [0, 1], smoothed with a wide Gaussian (so edges get no halos;
real depth is piecewise smooth at the scale haze acts on) and lifted to [0.15, 1] so that the
nearest objects still get a little haze.
"""
import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, Stream, as_map, blur, finish, odd_size
from jaxdeg.degrade.registry import register

MAX_BETA = 2.5  # t = exp(−2.5) ≈ 0.08 at the far plane: dense fog


def depth_prior(image):
  """Relative depth in [0.15, 1] from the colour attenuation and vertical-position priors."""
  h, w = image.shape[:2]
  v = image.max(-1)
  s = jnp.where(v > 0, (v - image.min(-1)) / jnp.maximum(v, 1e-6), 0.0)
  cap = 0.121779 + 0.959710 * v - 0.780245 * s
  cap = (cap - cap.min()) / jnp.maximum(cap.max() - cap.min(), 1e-6)
  rows = jnp.linspace(1.0, 0.0, h, dtype=jnp.float32)[:, None]
  d = 0.5 * cap + 0.5 * jnp.broadcast_to(rows, (h, w))
  sigma = max(h, w) / 32.0
  d = blur(d[..., None], sigma, min(odd_size(3 * sigma), 2 * min(h, w) - 1) | 1)[..., 0]
  d = (d - d.min()) / jnp.maximum(d.max() - d.min(), 1e-6)
  return 0.15 + 0.85 * d


@register("haze")
def haze(key, image, intensity, **overrides):
  """Uniform haze of density beta = 2.5·intensity; airlight A is a random bright, slightly blue grey."""
  kn = Knobs("haze", overrides, ("beta", "airlight", "depth"))
  beta = kn("beta", lambda: MAX_BETA * intensity)
  rs = Stream(key, 2)
  level = rs.uniform(0.75, 0.95)
  tint = rs.uniform(0.0, 0.06)  # scattered skylight is slightly blue

  def random_airlight():
    return jnp.stack([level - tint, level - 0.5 * tint, level])

  airlight = jnp.broadcast_to(kn("airlight", random_airlight), (3,))
  depth = as_map("haze", "depth", kn("depth", lambda: depth_prior(image)), image.shape[:2])
  t = jnp.exp(-beta * depth)[..., None]
  out = image * t + airlight * (1.0 - t)
  return finish(out), {"beta": beta, "airlight": airlight}
