"""Full-resolution inference in overlapping tiles: bounded memory for any image size.

Tiles of `tile`² pixels overlap by `overlap`; each tile's output is weighted by a window that is
zero for `margin` pixels at every edge shared with a neighbour (where a convolution saw padding
instead of the real neighbourhood) and then ramps linearly to one, so seams blend smoothly. For a
model whose receptive radius is ≤ `margin` the result equals whole-image inference exactly; models
with global pooling (NAFNet's channel attention, PromptIR's prompts) differ slightly, as they do
between any two crops. U-Nets need tile offsets on their downsampling grid: pass `align=2**levels`.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.errors import ConfigError, UserError
from jaxdeg.models.restore.ops import pad_to_multiple


def _starts(size, t, overlap, align):
  if size <= t:
    return [0]
  stride = max((t - overlap) // align * align, align)
  return list(range(0, size - t, stride)) + [size - t]


def _window(start, t, size, overlap, margin):
  """1-D blend weights of one tile; edges on the image border keep full weight."""
  d = np.arange(t, dtype=np.float32)
  ramp = lambda dist: np.clip((dist - margin + 1) / (overlap - 2 * margin + 1), 0.0, 1.0)
  w = np.ones(t, np.float32)
  if start > 0:
    w = np.minimum(w, ramp(d))
  if start + t < size:
    w = np.minimum(w, ramp(d[::-1]))
  return w


@functools.partial(jax.jit, static_argnames=("th", "tw"))
def _gather(x, idx, *, th, tw):
  take = lambda i: jax.lax.dynamic_slice(x, (i[0], i[1], i[2], 0), (1, th, tw, x.shape[-1]))[0]
  return jax.vmap(take)(idx)


@functools.partial(jax.jit, donate_argnums=0)
def _accumulate(acc, out, idx, wy, wx):
  def add(j, acc):
    w = (wy[j][:, None] * wx[j][None, :])[None, :, :, None]
    start = (idx[j, 0], idx[j, 1], idx[j, 2], 0)
    cur = jax.lax.dynamic_slice(acc, start, (1,) + out.shape[1:])
    return jax.lax.dynamic_update_slice(acc, cur + out[j][None].astype(acc.dtype) * w, start)
  return jax.lax.fori_loop(0, out.shape[0], add, acc)


def tiled_apply(fn, image, *, tile, overlap, batch_tiles=8, align=1, margin=None):
  """Applies `fn` ((N, th, tw, C) -> (N, th, tw, C')) to `image` ((H, W, C) or (B, H, W, C)) tile by tile.

  fn sees at most `batch_tiles` tiles per call, always the same shape (the last batch is padded
  with zero-weight tiles), so a jitted fn compiles once. `align`: tile offsets and sizes are
  multiples of it (the image is reflect-padded bottom/right to a multiple, as NAFNet/PromptIR do).
  `margin` (default overlap // 4): pixels discarded at tile edges shared with a neighbour.
  """
  x = jnp.asarray(image)
  if x.ndim not in (3, 4):
    raise UserError(f"tiled_apply: image must be (H, W, C) or (B, H, W, C), got shape {x.shape}")
  margin = overlap // 4 if margin is None else margin
  if tile % align or tile <= 0:
    raise ConfigError(f"tiled_apply: tile {tile} must be a positive multiple of align {align}")
  if not 0 <= overlap < tile:
    raise ConfigError(f"tiled_apply: overlap {overlap} must be in [0, tile {tile})")
  if not 0 <= 2 * margin < max(overlap, 1):
    raise ConfigError(f"tiled_apply: margin {margin} must be below overlap/2 ({overlap}/2)")
  if batch_tiles < 1:
    raise ConfigError(f"tiled_apply: batch_tiles {batch_tiles} must be >= 1")
  squeeze = x.ndim == 3
  if squeeze:
    x = x[None]
  x, (h0, w0) = pad_to_multiple(x, align)
  b, h, w, _ = x.shape
  th, tw = min(tile, h), min(tile, w)
  ys, xs = _starts(h, th, overlap, align), _starts(w, tw, overlap, align)
  idx = np.array([(i, y, z) for i in range(b) for y in ys for z in xs], np.int32)
  wy = np.stack([_window(y, th, h, overlap, margin) for _, y, _ in idx])
  wx = np.stack([_window(z, tw, w, overlap, margin) for _, _, z in idx])
  # total weight per pixel is static: compute it on the host
  wsum = np.zeros((h, w), np.float32)
  for (_, y, z), a, c in zip(idx[:len(ys) * len(xs)], wy, wx):
    wsum[y:y + th, z:z + tw] += a[:, None] * c[None, :]
  n = len(idx)
  bt = min(batch_tiles, n)
  pad = -n % bt
  idx = np.concatenate([idx, np.repeat(idx[-1:], pad, 0)])
  wy = np.concatenate([wy, np.zeros((pad, th), np.float32)])
  wx = np.concatenate([wx, np.zeros((pad, tw), np.float32)])

  out_shape = jax.eval_shape(fn, jax.ShapeDtypeStruct((bt, th, tw, x.shape[-1]), x.dtype))
  if out_shape.shape[:3] != (bt, th, tw):
    raise ConfigError(f"tiled_apply: fn must keep the tile size, mapped {(bt, th, tw)} "
                     f"to {out_shape.shape[:3]}")
  acc = jnp.zeros((b, h, w, out_shape.shape[-1]), jnp.float32)
  for s in range(0, len(idx), bt):
    sl = slice(s, s + bt)
    tiles = _gather(x, jnp.asarray(idx[sl]), th=th, tw=tw)
    acc = _accumulate(acc, fn(tiles), jnp.asarray(idx[sl]), jnp.asarray(wy[sl]), jnp.asarray(wx[sl]))
  y = (acc / wsum[None, :, :, None])[:, :h0, :w0].astype(out_shape.dtype)
  return y[0] if squeeze else y
