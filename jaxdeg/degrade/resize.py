"""Resolution loss: resample to a lower (or higher) virtual resolution and back, shape unchanged.

Pairs stay aligned at the input size, so a resize is a round trip through a virtual grid of
round(scale·n) pixels held in a static canvas. Kernels follow OpenCV/PyTorch: "area" averages the
pixels a target pixel covers (anti-aliased; bilinear-like when enlarging), "bilinear" and
"bicubic" (Keys, a = −0.75) sample without anti-aliasing, so shrinking aliases as it does in
Real-ESRGAN's pipeline. Both steps compose into one banded operator per axis.
"""
import math

import jax
import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, Stream, finish
from jaxdeg.degrade.registry import register
from jaxdeg.errors import ConfigError

MODES = ("area", "bilinear", "bicubic")
MIN_SCALE = 0.15  # Real-ESRGAN's resize_range lower bound


def _kernels(d, aa):
  """Weights of the three modes for tap offsets d (input px); aa = anti-alias factor ≤ 1."""
  half = 0.5 / aa
  area = jnp.clip(jnp.minimum(d + 0.5, half) - jnp.maximum(d - 0.5, -half), 0.0, None)
  bilinear = jnp.clip(1.0 - jnp.abs(d), 0.0, None)
  a, t = -0.75, jnp.abs(d)
  cubic = jnp.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                    jnp.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))
  return jnp.stack([area, bilinear, cubic])


def resample_taps(n_out, n_in_valid, ratio, mode_onehot, taps):
  """Indices (n_out, taps) and weights for resampling an axis by `ratio` = out size / in size.

  Input indices are clamped to the first `n_in_valid` entries (edge replication, as OpenCV does).
  """
  x = (jnp.arange(n_out, dtype=jnp.float32) + 0.5) / ratio - 0.5
  first = jnp.floor(x) - (taps // 2 - 1)
  idx = first[:, None] + jnp.arange(taps, dtype=jnp.float32)[None, :]
  weights = jnp.tensordot(mode_onehot, _kernels(idx - x[:, None], jnp.minimum(ratio, 1.0)), axes=1)
  weights = weights / jnp.sum(weights, axis=1, keepdims=True)
  idx = jnp.clip(idx, 0, n_in_valid - 1).astype(jnp.int32)
  return idx, weights


def round_trip_matrix(n, scale, mode_onehot, min_scale=MIN_SCALE, max_scale=1.0):
  """(n, n) operator of the round trip n -> round(scale·n) -> n along one axis.

  Composing the two resampling steps gives one matrix (banded, but a dense matmul beats shifted
  multiply-adds and gathers on CPU and compiles to a handful of ops).
  """
  canvas = int(math.ceil(n * max_scale))
  taps = max(4, int(math.ceil(1.0 / min_scale)) + 2)
  m = jnp.clip(jnp.round(scale * n), 1, canvas)
  down_idx, down_w = resample_taps(canvas, n, m / n, mode_onehot, taps)  # virtual <- input
  up_idx, up_w = resample_taps(n, m, n / m, mode_onehot, 4)  # output <- virtual
  w = (up_w[..., None] * down_w[up_idx]).reshape(n, -1)  # weights of input rows idx, per output row
  idx = down_idx[up_idx].reshape(n, -1)
  # Scatter-add: ~50× faster on CPU than a one-hot contraction or a compare-and-sum.
  return jnp.zeros((n, n), jnp.float32).at[jnp.arange(n)[:, None], idx].add(w)


def apply_matrices(x, rows, cols):
  """rows @ x @ colsᵀ on an (H, W, C) image. (The matrices are banded, but per-block matmuls of
  the band measured slower than one dense matmul on CPU.)"""
  x = jnp.einsum("ij,jwc->iwc", rows, x)
  return jnp.einsum("kw,iwc->ikc", cols, x)


def round_trip(image, scale, mode_onehot, min_scale=MIN_SCALE, max_scale=1.0):
  """Resample (H, W, C) to round(scale·size) per axis and back with the chosen mode."""
  h, w = image.shape[:2]
  rows = round_trip_matrix(h, scale, mode_onehot, min_scale, max_scale)
  cols = rows if w == h else round_trip_matrix(w, scale, mode_onehot, min_scale, max_scale)
  return apply_matrices(image, rows, cols)


def mode_onehot(kn, key):
  """The `mode` override (a name or index), else a uniform random choice, as a one-hot of 3."""
  mode = kn.static("mode", None)
  if isinstance(mode, str):
    if mode not in MODES:
      raise ConfigError(f"degradation 'resize': mode must be one of {', '.join(MODES)}, got {mode!r}")
    mode = MODES.index(mode)
  if mode is None:
    mode = Stream(key, 1).randint(0, len(MODES))
  return jax.nn.one_hot(mode, len(MODES), dtype=jnp.float32), jnp.asarray(mode, jnp.int32)


@register("resize")
def resize(key, image, intensity, **overrides):
  """Down-up resampling through scale 1 − 0.85·intensity (0.15 at 1) with a random mode."""
  kn = Knobs("resize", overrides, ("scale", "mode"))
  scale = kn("scale", lambda: 1.0 - (1.0 - MIN_SCALE) * intensity)
  onehot, mode = mode_onehot(kn, key)
  static_scale = kn.static("scale", None)
  lo = min(MIN_SCALE, static_scale) if isinstance(static_scale, (int, float)) else MIN_SCALE
  hi = max(1.0, static_scale) if isinstance(static_scale, (int, float)) else 1.0
  out = round_trip(image, scale, onehot, lo, hi)
  return finish(out), {"scale": scale, "mode": mode}
