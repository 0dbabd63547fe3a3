"""Low light: an under-exposed capture, simulated in linear light.

sRGB → linear; exposure drop by `stops` EV and a darkening tone curve (power `gamma`); a colour cast
(per-channel gains, as from a wrong white balance under dim artificial light); sensor noise
(Poisson shot noise for a sensor collecting `photons` photons at full scale, plus Gaussian read
noise); back to sRGB. The noise is added after the exposure drop, as in a real sensor, so it is
strong relative to the dim signal: that is what makes low-light images hard to restore.
"""
import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, Stream, finish, linear_to_srgb, srgb_to_linear
from jaxdeg.degrade.registry import register

MAX_STOPS = 5.0      # EV: 1/32 of the light, typical of LOL/SID inputs
FULL_PHOTONS = 1000  # photons at full scale: shot noise std sqrt(x/photons) in linear units
MAX_READ = 0.001     # read-noise std in linear units at intensity 1


def sensor_noise(noise, linear, shot, read):
  """Heteroscedastic Poisson–Gaussian noise: variance shot·x + read² (shot = 1/photons).

  `noise` is a standard normal field of linear's shape."""
  var = shot * jnp.maximum(linear, 0.0) + jnp.square(read)
  return linear + jnp.sqrt(var) * noise


@register("low_light")
def low_light(key, image, intensity, **overrides):
  """Exposure −5·intensity EV, gamma 1 + 0.4·intensity, colour cast of strength 0.15·intensity,
  shot noise of intensity/1000 (photons = 1000/intensity) and read noise 0.001·intensity."""
  kn = Knobs("low_light", overrides, ("stops", "gamma", "tint", "shot", "read"))
  rs = Stream(key, 5)
  cast = rs.normal((3,))
  stops = kn("stops", lambda: MAX_STOPS * intensity)
  gamma = kn("gamma", lambda: 1.0 + 0.4 * intensity)
  tint = jnp.broadcast_to(kn("tint", lambda: jnp.exp(0.15 * intensity * cast)), (3,))
  shot = kn("shot", lambda: intensity / FULL_PHOTONS)
  read = kn("read", lambda: MAX_READ * intensity)
  linear = jnp.power(srgb_to_linear(image), gamma) * jnp.exp2(-stops) * tint
  noisy = sensor_noise(rs.field_normal(linear.shape), linear, shot, read)
  return finish(linear_to_srgb(noisy)), {"stops": stops, "gamma": gamma, "tint": tint, "shot": shot, "read": read}
