"""Exposure error: the scene captured up to 2·intensity EV too bright or too dark (random direction).

Applied in linear light, so highlights clip and shadows crush as in a camera, not as a plain
brightness offset.
"""
import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, Stream, finish, linear_to_srgb, srgb_to_linear
from jaxdeg.degrade.registry import register

MAX_EV = 2.0


@register("exposure")
def exposure(key, image, intensity, **overrides):
  """Exposure shift ev = ±(1.2–2)·intensity EV (random sign and size; `ev` sets it, signed)."""
  kn = Knobs("exposure", overrides, ("ev",))
  rs = Stream(key, 2)
  sign = jnp.where(rs.bernoulli(), 1.0, -1.0)
  size = rs.uniform(0.6, 1.0)
  ev = kn("ev", lambda: sign * MAX_EV * intensity * size)
  out = linear_to_srgb(srgb_to_linear(image) * jnp.exp2(ev))
  return finish(jnp.where(ev == 0, image, out)), {"ev": ev}
