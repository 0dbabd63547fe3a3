"""Baseline JPEG compression round trip in JAX, modelled on libjpeg (what Pillow and OpenCV use).

RGB -> YCbCr (JFIF, full range), 8-bit samples, edge-replication padding to whole MCUs,
4:2:0 chroma averaging (or 4:4:4), level shift, 8x8 DCT, quantisation with the IJG tables
scaled by quality, rounding, dequantisation, IDCT, libjpeg's "fancy" (triangular) chroma
upsampling, back to 8-bit RGB.

intensity -> quality = round(100 - 90 * intensity): 0.5 gives 55, 1 gives 10. Intensity 0
returns the input untouched (even quality 100 is not lossless: chroma subsampling, rounding).
`straight_through=True` rounds in the forward pass and passes gradients through as identity,
for learned models that backprop through the compression.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.degrade._ops import Knobs, finish
from jaxdeg.degrade.registry import register
from jaxdeg.errors import ConfigError

# ITU T.81 Annex K tables (natural row-major order), the IJG defaults for quality 50.
LUMA_QTABLE = np.array([
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
  14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
  18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.int32).reshape(8, 8)
CHROMA_QTABLE = np.array([
  17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
  24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
  99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
  99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
], np.int32).reshape(8, 8)

_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114],
                        [-0.168735892, -0.331264108, 0.5],
                        [0.5, -0.418687589, -0.081312411]], np.float32)
_YCC_TO_RGB = np.array([[1.0, 0.0, 1.402],
                        [1.0, -0.344136286, -0.714136286],
                        [1.0, 1.772, 0.0]], np.float32)


def _mix3(x, m):
  """x @ m.T over the last axis of 3, as weighted sums: XLA:CPU runs a (pixels × 3) @ (3 × 3) dot
  ~10× slower than the elementwise form (it was two thirds of the round trip)."""
  return jnp.stack([x[..., 0] * m[c, 0] + x[..., 1] * m[c, 1] + x[..., 2] * m[c, 2] for c in range(3)], -1)


def rgb_to_ycbcr(rgb):
  """JFIF YCbCr (BT.601 full range) of RGB in [0, 255]; chroma centred on 128."""
  return _mix3(rgb, _RGB_TO_YCC) + jnp.array([0.0, 128.0, 128.0], jnp.float32)


def ycbcr_to_rgb(ycc):
  return _mix3(ycc - jnp.array([0.0, 128.0, 128.0], jnp.float32), _YCC_TO_RGB)


def quality_tables(quality):
  """IJG `jpeg_set_quality` (baseline): scale = 5000/q below 50, else 200 - 2q; entries clipped to 1..255.

  `quality` (1..100) may be traced; it is rounded to an integer like libjpeg's argument.
  """
  q = jnp.clip(jnp.round(jnp.asarray(quality, jnp.float32)), 1, 100).astype(jnp.int32)
  scale = jnp.where(q < 50, 5000 // q, 200 - 2 * q)
  tables = jnp.asarray(np.stack([LUMA_QTABLE, CHROMA_QTABLE]))
  return jnp.clip((tables * scale + 50) // 100, 1, 255)


def _dct_matrix():
  k = np.arange(8)[:, None]
  n = np.arange(8)[None, :]
  m = np.sqrt(2.0 / 8.0) * np.cos((2 * n + 1) * k * np.pi / 16.0)
  m[0] /= np.sqrt(2.0)
  return jnp.asarray(m, jnp.float32)


def _make_round(straight_through):
  def rnd(x):
    # libjpeg rounds half away from zero when quantising.
    r = jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)
    return x + jax.lax.stop_gradient(r - x) if straight_through else r
  return rnd


def _code_plane(plane, table, rnd):
  """DCT -> quantise -> dequantise -> IDCT of one level-shifted plane whose sides are multiples of 8."""
  h, w = plane.shape
  d = _dct_matrix()
  blocks = plane.reshape(h // 8, 8, w // 8, 8)
  coef = jnp.einsum("ui,aibj,vj->aubv", d, blocks, d)
  t = table.astype(jnp.float32)[None, :, None, :]
  coef = rnd(coef / t) * t
  return jnp.einsum("ui,aubv,vj->aibj", d, coef, d).reshape(h, w)


def _downsample(plane, rnd):
  # Four strided slices, not a mean over a (h/2, 2, w/2, 2) view, which XLA:CPU runs as a reduction
  # pass of its own (a fifth of the round trip). The samples are integers: the sum is exact.
  quad = plane[0::2, 0::2] + plane[1::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 1::2]
  return rnd(quad * 0.25)


def _fancy_upsample(plane):
  """libjpeg's h2v2 fancy upsampling: each output sample is 3/4 nearer + 1/4 farther input, per axis."""
  def axis_up(x, axis):
    n = x.shape[axis]
    prev = jnp.concatenate([jax.lax.slice_in_dim(x, 0, 1, axis=axis),
                            jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis)
    nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis),
                           jax.lax.slice_in_dim(x, n - 1, n, axis=axis)], axis)
    even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
    out = jnp.stack([even, odd], axis + 1)
    return out.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1:])
  return axis_up(axis_up(plane, 0), 1)


def jpeg_roundtrip(image, quality, subsampling="420", straight_through=False):
  """Compress and decompress one RGB image (H, W, 3) in [0, 1] at `quality` (1..100)."""
  if subsampling not in ("420", "444"):
    raise ConfigError(f"jpeg: subsampling={subsampling!r}, expected '420' or '444'")
  return _roundtrip(jnp.asarray(image, jnp.float32), jnp.asarray(quality, jnp.float32), subsampling,
                    bool(straight_through))


# Jitted so that eager callers compile once per shape instead of dispatching op by op.
@functools.partial(jax.jit, static_argnums=(2, 3))
def _roundtrip(image, quality, subsampling, straight_through):
  rnd = _make_round(straight_through)
  h, w = image.shape[:2]
  mcu = 16 if subsampling == "420" else 8
  ph, pw = -h % mcu, -w % mcu
  x = jnp.pad(image.astype(jnp.float32), ((0, ph), (0, pw), (0, 0)), mode="edge") * 255.0
  ycc = jnp.clip(rnd(rgb_to_ycbcr(x)), 0, 255)
  tables = quality_tables(quality)
  planes = []
  for c in range(3):
    p = ycc[..., c]
    if c and subsampling == "420":
      p = _downsample(p, rnd)
    p = jnp.clip(rnd(_code_plane(p - 128.0, tables[int(c > 0)], rnd) + 128.0), 0, 255)
    if c and subsampling == "420":
      p = _fancy_upsample(p)
    planes.append(p)
  rgb = jnp.clip(rnd(ycbcr_to_rgb(jnp.stack(planes, -1))), 0, 255) / 255.0
  return rgb[:h, :w]


@register("jpeg")
def jpeg(key, image, intensity, **overrides):
  """JPEG artefacts; quality = round(100 - 90 * intensity), intensity 0 leaves the image untouched.

  Overrides: quality (1..100, may be traced), subsampling ("420" default like Pillow/cv2, or "444"),
  straight_through (bool: identity gradients through the rounding).
  """
  del key  # JPEG is deterministic.
  kn = Knobs("jpeg", overrides, ("quality", "subsampling", "straight_through"))
  intensity = jnp.clip(jnp.asarray(intensity, jnp.float32), 0.0, 1.0)
  quality = kn("quality", lambda: jnp.round(100.0 - 90.0 * intensity))
  out = jpeg_roundtrip(image, quality, str(kn.static("subsampling", "420")),
                       bool(kn.static("straight_through", False)))
  if not kn.given("quality"):
    out = jnp.where(intensity > 0, out, image)
  return finish(out), {"quality": quality}
