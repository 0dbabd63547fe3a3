"""Camera-shake motion blur from random trajectories (Boracchi & Foi, TIP 2012; as in DeblurGAN).

A trajectory is a 2-D random walk with inertia: each step keeps its speed, is pulled back towards
the start (centripetal term), jitters with Gaussian shake and, rarely, jerks into a new direction.
It is rescaled to a path length of `length` px (0.1 of the short image side at intensity 1),
centred on its centroid (so the blur does not shift the image) and splatted bilinearly into the
point-spread function.
"""
import jax
import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, Stream, convolve, finish, odd_size
from jaxdeg.degrade.registry import register

STEPS = 64
MAX_LENGTH_FRACTION = 0.1


def trajectory(rs, steps=STEPS):
  """Random camera path of unit total length, complex positions of shape (steps,), centroid 0."""
  centripetal, big_shake, shake, angle = rs.uniform(shape=(4,)) * jnp.asarray([0.7, 0.2, 10.0, 2 * jnp.pi])
  expl = 0.1  # Boracchi & Foi's "exposure" constant that scales the random terms
  step = 1.0 / (steps - 1)
  u_jerk = rs.uniform(shape=(steps, 2))
  z_shake = rs.normal((steps, 2))
  v0 = jnp.exp(1j * angle) * step

  def body(carry, xs):
    x, v = carry
    u, z = xs
    jerk = jnp.where(u[0] < big_shake * expl, 2 * v * jnp.exp(1j * (jnp.pi + (u[1] - 0.5))), 0.0)
    dv = jerk + expl * (shake * (z[0] + 1j * z[1]) - centripetal * x) * step
    v = v + dv
    v = v / jnp.maximum(jnp.abs(v), 1e-12) * step
    return (x + v, v), x + v

  _, path = jax.lax.scan(body, (jnp.complex64(0), v0.astype(jnp.complex64)), (u_jerk[:-1], z_shake[:-1]))
  path = jnp.concatenate([jnp.zeros((1,), jnp.complex64), path])
  return path - path.mean()


def splat_kernel(size, path):
  """Bilinear splat of complex positions (px, centre of the grid = 0) into a normalised size² PSF."""
  c = size // 2

  def axis_weights(v):
    # (steps, size): each sample's linear-interpolation weights along one axis (no scatter needed).
    v = jnp.clip(v + c, 0, size - 1.001)
    v0 = jnp.floor(v)
    f = (v - v0)[:, None]
    v0 = v0.astype(jnp.int32)
    return (1 - f) * jax.nn.one_hot(v0, size) + f * jax.nn.one_hot(v0 + 1, size)

  k = jnp.einsum("sy,sx->yx", axis_weights(path.imag), axis_weights(path.real))
  return k / k.sum()


def psf_size(length):
  """A window that holds every path of `length` px: evenly spaced samples lie within length/2 of
  their centroid (the farthest, an end, averages |i - j|·length/63 over the 64 samples), and the
  bilinear splat reaches one pixel further on each side."""
  return odd_size(length / 2) + 2


@register("motion_blur")
def motion_blur(key, image, intensity, **overrides):
  """Camera-shake blur with a path length of 0.1·intensity of the short image side."""
  kn = Knobs("motion_blur", overrides, ("length", "size"))
  h, w = image.shape[:2]
  max_length = MAX_LENGTH_FRACTION * min(h, w)
  length = kn("length", lambda: max_length * intensity)
  # the window holds the longest path: intensity 1's, or a static `length` override
  static_length = kn.overrides.get("length")
  longest = float(static_length) if isinstance(static_length, (int, float)) else max_length
  size = int(kn.static("size", None) or psf_size(longest)) | 1
  psf = splat_kernel(size, trajectory(Stream(key, 4 + 4 * STEPS)) * length)
  return finish(convolve(image, psf)), {"length": length}
