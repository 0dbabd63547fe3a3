"""AV1 film grain synthesis (Norkin & Birkbeck; AV1 spec 7.18.3) in pure JAX.

`add_grain_yuv` is the spec's process on 8-bit Y/Cb/Cr planes and matches dav1d bit for bit:
Gaussian-sequence templates drawn with the spec's 16-bit LFSR, autoregressive filtering (lag <= 3),
32x32 luma blocks (16x16 chroma for 4:2:0) cut from the templates at pseudo-random offsets,
optional overlap blending, piecewise-linear scaling of the grain by the local intensity.

The LFSR is linear over GF(2), so every random number is a parity of the seed bits under a mask
computed once in numpy: the whole random stream is one vectorised op and the seed may be traced.
Only the AR filter is sequential (a scan over the template samples).

The registered `film_grain` degradation works on RGB in [0, 1]: it converts to full-range BT.601
YCbCr (JFIF, the same matrix as `jpeg`), quantises to 8-bit codes for the grain computation,
subsamples chroma 4:2:0 like a video decoder would, and adds the resulting code-value change back
to the unquantised image, so intensity 0 returns the input exactly.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdeg.degrade._ops import Knobs, finish
from jaxdeg.degrade.film_grain_data import GAUSSIAN_SEQUENCE
from jaxdeg.degrade.film_grain_params import FilmGrainParams, as_params, scaling_lut
from jaxdeg.degrade.jpeg import rgb_to_ycbcr, ycbcr_to_rgb
from jaxdeg.degrade.registry import register
from jaxdeg.errors import ConfigError

GRAIN_MIN, GRAIN_MAX = -128, 127
_GAUSSIAN = np.asarray(GAUSSIAN_SEQUENCE, np.int32)
# Preset used when no `params` override is given: libaom test 2 (flat scaling, lag-3 AR, overlap),
# a fine 35mm-like grain. Intensity 1 doubles its scaling function (still a valid AV1 set: the
# scaled points stay within 0..255), intensity 0.5 is the set as coded.
DEFAULT_PRESET = 2
MAX_SCALE = 2.0


def _round2(x, n):
  return (x + ((1 << n) >> 1)) >> n


@functools.lru_cache(maxsize=None)
def _lfsr_masks(steps: int, bits: int) -> np.ndarray:
  """masks[n, k]: the seed bits whose parity is bit k of the (n+1)-th get_random_number(bits)."""
  state = [1 << i for i in range(16)]
  out = np.zeros((steps, bits), np.int32)
  for n in range(steps):
    state = state[1:] + [state[0] ^ state[1] ^ state[3] ^ state[12]]
    out[n] = state[16 - bits:]
  return out


def _random_numbers(seeds, steps, bits):
  """The first `steps` get_random_number(bits) outputs for each 16-bit seed: shape seeds.shape + (steps,)."""
  masks = jnp.asarray(_lfsr_masks(steps, bits))
  seeds = jnp.asarray(seeds, jnp.int32)[..., None, None]
  parity = lax.population_count(masks & seeds) & 1
  return jnp.sum(parity << jnp.arange(bits, dtype=jnp.int32), axis=-1)


def _gaussian_template(seed, h, w, shift):
  idx = _random_numbers(seed, h * w, 11)
  g = jnp.asarray(_GAUSSIAN)[idx]
  return _round2(g, shift).reshape(h, w)


def _ar_filter(block, coeffs, lag, shift, extra):
  """The spec's causal AR filter on a template: rows 3.., columns 3..W-4, in raster order.

  coeffs are ordered like the spec (rows -lag..-1 with columns -lag..lag, then row 0 columns
  -lag..-1); `extra` (H, W) is added to every weighted sum (the luma term of chroma templates).
  One flat scan over the positions: it compiles several times faster than nested row/column scans
  and runs as fast.
  """
  h, w = block.shape
  clip = lambda v: jnp.clip(v, GRAIN_MIN, GRAIN_MAX)
  if lag == 0:
    return block.at[3:, 3:w - 3].set(clip(block[3:, 3:w - 3] + _round2(extra[3:, 3:w - 3], shift)))
  # Coefficients as a (lag+1, 2*lag+1) window ending at the current sample; it and later ones get 0.
  window = jnp.concatenate([coeffs, jnp.zeros((lag + 1,), coeffs.dtype)]).reshape(lag + 1, 2 * lag + 1)
  ys, xs = np.meshgrid(np.arange(3, h), np.arange(3, w - 3), indexing="ij")
  positions = jnp.asarray(np.stack([ys.ravel(), xs.ravel()], 1), jnp.int32)

  def step(blk, yx):
    y, x = yx[0], yx[1]
    past = lax.dynamic_slice(blk, (y - lag, x - lag), (lag + 1, 2 * lag + 1))
    v = clip(blk[y, x] + _round2(jnp.sum(past * window) + extra[y, x], shift))
    return lax.dynamic_update_slice(blk, v[None, None], (y, x)), None

  return lax.scan(step, block, positions)[0]


def grain_templates(params: FilmGrainParams, seed, sub_x=1, sub_y=1):
  """The luma (73, 82) and Cb/Cr (38, 44 for 4:2:0; 73, 82 for 4:4:4) grain templates, int32."""
  shift = 4 + params.grain_scale_shift
  ar_shift = params.ar_coeff_shift
  lag = params.ar_coeff_lag
  seed = jnp.asarray(seed, jnp.int32) & 0xFFFF
  luma = _gaussian_template(seed, 73, 82, shift)
  luma = _ar_filter(luma, jnp.asarray(params.ar_coeffs_y, jnp.int32), lag, ar_shift,
                    jnp.zeros((73, 82), jnp.int32))
  ch, cw = (38 if sub_y else 73), (44 if sub_x else 82)
  # The luma term of the chroma AR: co-located luma grain averaged over the subsampling cell.
  cell = luma[3:3 + ((ch - 3) << sub_y), 3:3 + ((cw - 6) << sub_x)]
  cell = cell.reshape(ch - 3, 1 + sub_y, cw - 6, 1 + sub_x).sum((1, 3))
  luma_avg = jnp.zeros((ch, cw), jnp.int32).at[3:, 3:cw - 3].set(_round2(cell, sub_x + sub_y))
  if not (params.apply_cb or params.apply_cr):
    zero = jnp.zeros((ch, cw), jnp.int32)
    return luma, zero, zero
  # Cb and Cr share one vmapped AR scan.
  init = jnp.stack([_gaussian_template(seed ^ 0xB524, ch, cw, shift),
                    _gaussian_template(seed ^ 0x49D8, ch, cw, shift)])
  coeffs = jnp.asarray([params.ar_coeffs_cb, params.ar_coeffs_cr], jnp.int32)
  extra = coeffs[:, -1, None, None] * luma_avg if params.apply_y else jnp.zeros((2, ch, cw), jnp.int32)
  chroma = jax.vmap(lambda b, c, e: _ar_filter(b, c, lag, ar_shift, e))(init, coeffs[:, :-1], extra)
  # A plane without grain keeps a zero template, as in the spec.
  on = jnp.asarray([params.apply_cb, params.apply_cr])[:, None, None]
  chroma = jnp.where(on, chroma, 0)
  return luma, chroma[0], chroma[1]


def block_offsets(seed, n_stripes, n_blocks):
  """The 8-bit random offset of every 32x32 block: (n_stripes, n_blocks) int32."""
  r = np.arange(n_stripes)
  row_xor = jnp.asarray((((r * 37 + 178) & 255) << 8) ^ ((r * 173 + 105) & 255), jnp.int32)
  seeds = (jnp.asarray(seed, jnp.int32) & 0xFFFF) ^ row_xor
  return _random_numbers(seeds, n_blocks, 8)


def _noise_plane(template, offsets, sub_x, sub_y, overlap, h, w):
  """Assemble the noise image of one plane from template blocks (spec 7.18.3.5, noise stripes)."""
  bx, by = 32 >> sub_x, 32 >> sub_y
  ox, oy = 2 >> sub_x, 2 >> sub_y
  off_x = (6 + (offsets >> 4)) if sub_x else (9 + 2 * (offsets >> 4))
  off_y = (6 + (offsets & 15)) if sub_y else (9 + 2 * (offsets & 15))
  rows = off_y[..., None] + jnp.arange(by + oy)
  cols = off_x[..., None] + jnp.arange(bx + ox)
  blocks = template[rows[..., :, None], cols[..., None, :]]  # (stripes, blocks, by+oy, bx+ox)
  ns, nb = offsets.shape

  def blend(old, new, sub):
    wts = np.array([[23, 22]] if sub else [[27, 17], [17, 27]], np.int32)
    return jnp.clip(_round2(old * wts[:, 0] + new * wts[:, 1], 5), GRAIN_MIN, GRAIN_MAX)

  if overlap and nb > 1:
    mixed = blend(blocks[:, :-1, :, bx:bx + ox], blocks[:, 1:, :, :ox], sub_x)
    blocks = blocks.at[:, 1:, :, :ox].set(mixed)
  stripes = blocks[..., :bx].transpose(0, 2, 1, 3).reshape(ns, by + oy, nb * bx)
  if overlap and ns > 1:
    mixed = blend(jnp.swapaxes(stripes[:-1, by:by + oy], 1, 2), jnp.swapaxes(stripes[1:, :oy], 1, 2), sub_y)
    stripes = stripes.at[1:, :oy].set(jnp.swapaxes(mixed, 1, 2))
  return stripes[:, :by].reshape(ns * by, nb * bx)[:h, :w]


def _scaled_noise(lut, index, grain, scale, shift):
  # round2(lut * grain, shift) in float32: exact for scale 1 (|lut * grain| < 2^15), smooth otherwise.
  s = jnp.asarray(lut, jnp.float32)[index] * scale * grain.astype(jnp.float32)
  return jnp.floor((s + (1 << (shift - 1))) / (1 << shift)).astype(jnp.int32)


def add_grain_yuv(y, cb, cr, params: FilmGrainParams, seed, scale=1.0, mc_identity=False):
  """Apply AV1 film grain to 8-bit planes (int arrays): Y (H, W), Cb/Cr (Hc, Wc).

  Chroma layout follows the shapes: ((H+1)//2, (W+1)//2) is 4:2:0, (H, W) is 4:4:4. With scale 1
  the result equals a conforming decoder's (dav1d `--filmgrain 1`) for the same params and seed;
  `scale` multiplies the scaling functions (0 gives no grain). Returns (Y, Cb, Cr) int32.
  """
  params = as_params(params)
  y, cb, cr = (jnp.asarray(p, jnp.int32) for p in (y, cb, cr))
  h, w = y.shape
  if cb.shape == ((h + 1) // 2, (w + 1) // 2) and cr.shape == cb.shape:
    sub = 1
  elif cb.shape == (h, w) and cr.shape == cb.shape:
    sub = 0
  else:
    raise ConfigError(f"add_grain_yuv: chroma shapes {cb.shape}, {cr.shape} are neither 4:2:0 nor 4:4:4 "
                      f"of luma {y.shape}")
  return _add_grain(y, cb, cr, jnp.asarray(seed, jnp.int32), jnp.asarray(scale, jnp.float32),
                    params, sub, bool(mc_identity))


# Jitted with the parameter set static: eager callers compile once per (params, shape).
@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _add_grain(y, cb, cr, seed, scale, params, sub, mc_identity):
  h, w = y.shape
  sub_x = sub_y = sub
  luma_t, cb_t, cr_t = grain_templates(params, seed, sub_x, sub_y)
  ns, nb = -(-((h + 1) // 2) // 16), -(-((w + 1) // 2) // 16)
  offsets = block_offsets(seed, ns, nb)
  overlap = bool(params.overlap_flag)
  shift = params.scaling_shift
  if params.clip_to_restricted_range:
    lo, hi_y, hi_c = 16, 235, (235 if mc_identity else 240)
  else:
    lo, hi_y, hi_c = 0, 255, 255

  out_c = []
  ch, cw = cb.shape
  # Chroma scaling reads the luma before grain: the top-left luma of each cell, averaged across x.
  luma = jnp.pad(y, ((0, 0), (0, w & sub_x)), mode="edge")[::1 + sub_y]
  avg = (luma[:, 0::2] + luma[:, 1::2] + 1) >> 1 if sub_x else luma
  for c, t, on, mult, lmult, offset, points in (
      (cb, cb_t, params.apply_cb, params.cb_mult, params.cb_luma_mult, params.cb_offset,
       params.scaling_points_cb),
      (cr, cr_t, params.apply_cr, params.cr_mult, params.cr_luma_mult, params.cr_offset,
       params.scaling_points_cr)):
    if not on:
      out_c.append(c)
      continue
    if params.chroma_scaling_from_luma:
      merged, points = avg, params.scaling_points_y
    else:
      merged = jnp.clip(((avg * (lmult - 128) + c * (mult - 128)) >> 6) + (offset - 256), 0, 255)
    noise = _noise_plane(t, offsets, sub_x, sub_y, overlap, ch, cw)
    out_c.append(jnp.clip(c + _scaled_noise(scaling_lut(points), merged, noise, scale, shift), lo, hi_c))
  if params.apply_y:
    noise = _noise_plane(luma_t, offsets, 0, 0, overlap, h, w)
    y = jnp.clip(y + _scaled_noise(scaling_lut(params.scaling_points_y), y, noise, scale, shift), lo, hi_y)
  return y, out_c[0], out_c[1]


def _subsample(plane, sub):
  """Chroma plane to 8-bit codes; 4:2:0 averages 2x2 cells (edge-replicated to even size)."""
  if sub:
    h, w = plane.shape
    plane = jnp.pad(plane, ((0, h & 1), (0, w & 1)), mode="edge")
    plane = plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean((1, 3))
  return jnp.clip(jnp.round(plane), 0, 255).astype(jnp.int32)


def _upsample(plane, sub, h, w):
  if sub:
    plane = jnp.repeat(jnp.repeat(plane, 2, axis=0), 2, axis=1)
  return plane[:h, :w]


@register("film_grain")
def film_grain(key, image, intensity, **overrides):
  """AV1 film grain on an RGB image.

  intensity -> scale = 2 * intensity, a multiplier on the scaling functions of the parameter set
  (0: no grain, 0.5: the set as coded, 1: twice as strong). Overrides:
    params: FilmGrainParams, a dict of its fields, a libaom preset number 1..16 (default 2), or
      the path of an aomenc `filmgrn1` grain table (its first segment that applies grain).
    scale: the multiplier directly (ignores intensity).
    random_seed: 16-bit grain seed (default: drawn from `key`); pass params.random_seed to
      reproduce the decoder's grain exactly.
    subsampling: "420" (default, like AV1 video) or "444" chroma grain.
    overlap, clip_to_restricted_range: override those flags of `params`.
  With clip_to_restricted_range the grain is clipped at the 16..235/240 limits, but pixels that
  start outside that range are not moved (the image stays full range).
  """
  kn = Knobs("film_grain", overrides,
             ("params", "scale", "random_seed", "subsampling", "overlap", "clip_to_restricted_range"))
  params = as_params(kn.static("params", DEFAULT_PRESET))
  for name, field in (("overlap", "overlap_flag"), ("clip_to_restricted_range", "clip_to_restricted_range")):
    if kn.given(name):
      params = params.replace(**{field: int(bool(kn.static(name, 0)))})
  subsampling = str(kn.static("subsampling", "420"))
  if subsampling not in ("420", "444"):
    raise ConfigError(f"film_grain: subsampling={subsampling!r}, expected '420' or '444'")
  sub = int(subsampling == "420")
  scale = kn("scale", lambda: MAX_SCALE * jnp.clip(intensity, 0.0, 1.0))
  if kn.given("random_seed"):
    seed = jnp.asarray(kn.overrides["random_seed"], jnp.int32) & 0xFFFF
  else:
    seed = jax.random.randint(key, (), 0, 1 << 16, jnp.int32)

  return _film_grain_rgb(image, scale, seed, params, sub), {"scale": scale, "random_seed": seed}


@functools.partial(jax.jit, static_argnums=(3, 4))
def _film_grain_rgb(image, scale, seed, params, sub):
  h, w = image.shape[:2]
  ycc = rgb_to_ycbcr(image.astype(jnp.float32) * 255.0)
  y = jnp.clip(jnp.round(ycc[..., 0]), 0, 255).astype(jnp.int32)
  cb, cr = _subsample(ycc[..., 1], sub), _subsample(ycc[..., 2], sub)
  y2, cb2, cr2 = _add_grain(y, cb, cr, seed, scale, params, sub, False)
  lo, hi_y, hi_c = (16, 235, 240) if params.clip_to_restricted_range else (0, 255, 255)
  # Code-value change only, measured against the range-clipped input (no grain -> no change).
  delta = jnp.stack([y2 - jnp.clip(y, lo, hi_y),
                     _upsample(cb2 - jnp.clip(cb, lo, hi_c), sub, h, w),
                     _upsample(cr2 - jnp.clip(cr, lo, hi_c), sub, h, w)], -1)
  return finish(ycbcr_to_rgb(ycc + delta.astype(jnp.float32)) / 255.0)
