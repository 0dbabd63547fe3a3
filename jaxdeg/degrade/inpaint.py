"""Random inpainting holes: free-form brush strokes and elliptic blobs (DeepFill-style masks).

The holes are inhomogeneous by design (the universal model's IDEN learns such spatially varying
damage). Holes are filled with zeros or with uniform noise; the binary mask (H, W), 1 = hole, is
returned in params["mask"]. Stroke i appears when its random threshold is below the intensity and
widths grow with it, so a stronger setting covers a superset of a weaker one.
"""
import jax
import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, Stream, as_map, finish
from jaxdeg.degrade.registry import register

STROKES, VERTICES, BLOBS = 8, 5, 4


def _segment_distance(yy, xx, a, b):
  ab = b - a
  t = jnp.clip(((yy - a[0]) * ab[0] + (xx - a[1]) * ab[1]) / jnp.maximum(jnp.sum(ab * ab), 1e-6), 0.0, 1.0)
  return jnp.sqrt(jnp.square(yy - a[0] - t * ab[0]) + jnp.square(xx - a[1] - t * ab[1]))


MASK_WORDS = STROKES * (2 + 1 + 2 * (VERTICES - 1) + 2) + BLOBS * 5


def random_mask(rs, shape, intensity):
  """Binary float mask (H, W) of strokes and blobs from Stream `rs`; empty at intensity 0."""
  h, w = shape
  side = float(min(h, w))
  size = jnp.asarray([h, w], jnp.float32)
  # Strokes: a random walk of VERTICES points with a common width.
  start = rs.uniform(shape=(STROKES, 1, 2)) * size
  angle = jnp.cumsum(rs.uniform(-1.2, 1.2, (STROKES, VERTICES - 1)), axis=1) + rs.uniform(0, 6.3, (STROKES, 1))
  step = rs.uniform(0.06, 0.18, (STROKES, VERTICES - 1)) * side
  moves = jnp.stack([jnp.sin(angle), jnp.cos(angle)], -1) * step[..., None]
  points = jnp.concatenate([start, start + jnp.cumsum(moves, axis=1)], axis=1)
  width = rs.uniform(0.015, 0.04, (STROKES,)) * side * (0.5 + 0.5 * intensity)
  stroke_on = rs.uniform(shape=(STROKES,)) < intensity
  # Blobs: ellipses of random size and aspect.
  blob = rs.uniform(shape=(BLOBS, 4)) * jnp.asarray([h, w, 0.1 * side, 0.1 * side]) + jnp.asarray(
      [0, 0, 0.04 * side, 0.04 * side])
  blob_on = rs.uniform(shape=(BLOBS,)) < intensity

  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")

  # Every segment and blob at once: XLA fuses the distance maps into one reduction over them.
  a = points[:, :-1].reshape(-1, 2)
  b = points[:, 1:].reshape(-1, 2)
  seg_width = jnp.repeat(jnp.where(stroke_on, width, -1.0), VERTICES - 1)
  dist = jax.vmap(lambda p, q: _segment_distance(yy, xx, p, q))(a, b)
  strokes = jnp.any(dist <= seg_width[:, None, None], axis=0)
  grow = 0.5 + 0.5 * intensity
  ellipse = (jnp.square((yy - blob[:, 0, None, None]) / (blob[:, 2, None, None] * grow)) +
             jnp.square((xx - blob[:, 1, None, None]) / (blob[:, 3, None, None] * grow)))
  blobs = jnp.any((ellipse <= 1.0) & blob_on[:, None, None], axis=0)
  return (strokes | blobs).astype(jnp.float32)


@register("inpaint_mask")
def inpaint_mask(key, image, intensity, **overrides):
  """Holes from up to 8 strokes and 4 blobs; `fill` 0 = zeros, 1 = noise (default: a coin flip)."""
  kn = Knobs("inpaint_mask", overrides, ("fill", "mask"))
  rs = Stream(key, MASK_WORDS + 3)
  coin = rs.bernoulli().astype(jnp.float32)
  noise = rs.field_uniform(image.shape)
  mask = as_map("inpaint_mask", "mask", kn("mask", lambda: random_mask(rs, image.shape[:2], intensity)),
                image.shape[:2])
  fill = kn("fill", coin)
  m = mask[..., None]
  out = image * (1.0 - m) + m * fill * noise
  return finish(out), {"mask": mask, "fill": fill}
