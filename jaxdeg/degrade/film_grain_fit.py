"""Best-fit AV1 film grain parameters for a (clean, grainy) pair: the classical grain-transfer
baseline (what an encoder's grain estimator produces), as a `FilmGrainParams` that `film_grain`
and `add_grain_yuv` synthesise.

The AV1 model per plane: grain = round2(scaling(intensity) · n, scaling_shift), n the grain
template, a causal autoregressive field n = w + Σ_k (c_k / 2^ar_coeff_shift) · n[past_k]
(+ a co-located luma term for chroma) with white innovations w = round2(gaussian, 4 + grain_scale_shift).
The fit, in 8-bit code units of full-range BT.601 YCbCr (the space `film_grain` works in):

1. σ(luma): grain std in up to 14 (luma) / 10 (chroma) equal-count bins of the clean luma (chroma:
   its 2×2 cell mean; chroma grain is measured at 4:2:0, the 2×2 mean of the Cb/Cr grain), one
   point per bin with at least `min_pixels` pixels, at the bin's mean luma; σ from the bin's pixels
   that the [0, 1] clip cannot have cut (the synthesis clips again) where it has enough of them.
2. Normalised grain n̂ = grain / σ(luma) (piecewise-linear σ), unit variance by construction.
3. AR coefficients a_k by least squares of n̂ on its causal neighbours (lag `lag`, the spec's
   coefficient order), over the pixels whose neighbourhood has grain and is unclipped (looser
   masks when too few such pixels remain, e.g. in dark or saturated images); chroma adds
   the 2×2 mean of the luma's n̂ as the last regressor β, so its coded luma term is
   b = β · σ_e(luma) / σ_e(chroma) (σ_e: residual std of each regression).
4. Integer coding: ar_coeff_shift the largest of 6..9 that keeps every coefficient in −128..127;
   grain_scale_shift the smallest whose template std stays below MAX_TEMPLATE_STD (templates clip at
   ±128); the template stds of the quantised filters come from simulating their templates (the
   spec's filter in float on the synthesis' own white templates for 32 fixed seeds; std within a
   template over the window its blocks are cut from, as the measured grain has it);
   scaling = σ · 2^scaling_shift / template std with scaling_shift the largest of 8..11 that keeps
   every scaling point ≤ 255 (grain too strong for AV1 is clipped there). Rounding adds 1/12 code²
   of variance that the synthesis adds again, so it is subtracted from σ² first.
Chroma is indexed by luma alone (cb_mult 128, cb_luma_mult 192, cb_offset 256: the merged index is
the cell's luma); a plane with no measurable grain gets no scaling points (no grain).
"""
import functools

import numpy as np
from scipy import signal

from jaxdeg.degrade.film_grain import _lfsr_masks
from jaxdeg.degrade.film_grain_data import GAUSSIAN_SEQUENCE
from jaxdeg.degrade.film_grain_params import FilmGrainParams
from jaxdeg.errors import ConfigError, UserError
from jaxdeg.metrics.grain_stats import RGB_TO_YCBCR

DEFAULT_LAG = 3
LUMA_POINTS, CHROMA_POINTS = 14, 10
MIN_PIXELS = 64
MAX_TEMPLATE_STD = 42.0   # ≈ 3σ inside the templates' ±128 clip
CLIP_MARGIN = 3.0         # grain stds between a clean value and 0 or 1 for σ to be measured there
NO_GRAIN_STD = 0.05       # code units: a plane with less grain than this gets none
_ROUNDING_VAR = 1.0 / 12.0
_SIM_SEEDS = (np.arange(32) * 2039 + 17) & 0xFFFF  # template seeds the simulation averages over


def fit_film_grain(clean, grainy, lag=DEFAULT_LAG, random_seed=0, overlap=True,
                   min_pixels=MIN_PIXELS) -> FilmGrainParams:
  """AV1 film grain parameters whose synthesis on `clean` best imitates `grainy`'s grain.

  clean, grainy: RGB (H, W, 3), uint8 or float in [0, 1], the same scene with and without grain.
  lag: AR lag 0..3. random_seed, overlap: copied into the parameter set.
  """
  if lag not in (0, 1, 2, 3):
    raise ConfigError(f"fit_film_grain: lag={lag!r}, expected 0, 1, 2 or 3")
  clean_ycc, grainy_ycc = _ycc_codes(clean, "clean"), _ycc_codes(grainy, "grainy")
  if clean_ycc.shape != grainy_ycc.shape:
    raise UserError(f"fit_film_grain: clean {clean_ycc.shape} and grainy {grainy_ycc.shape} differ in shape")
  h, w = clean_ycc.shape[:2]
  if min(h, w) < 2 * (2 * lag + 2):
    raise UserError(f"fit_film_grain: a {h}x{w} image is too small for an AR fit of lag {lag}")
  grain = grainy_ycc - clean_ycc
  luma = np.clip(np.round(clean_ycc[..., 0]), 0, 255)
  trusted = _trust_levels(_as_float(clean), _as_float(grainy))

  y_x, y_std = _scaling_curve(grain[..., 0], luma, LUMA_POINTS, min_pixels, trusted[0])
  luma_on = y_std.size > 0 and _model_std(y_std).max() >= NO_GRAIN_STD
  if luma_on:
    y_norm, y_has = _normalise(grain[..., 0], luma, y_x, y_std)
    y_coeffs, y_resid = _ar_fit(y_norm, [y_has & t for t in trusted], lag)
  else:
    y_norm, y_has = np.zeros((h, w)), np.zeros((h, w), bool)
    y_coeffs, y_resid = np.zeros(2 * lag * (lag + 1)), 1.0

  # chroma at 4:2:0: 2x2 cells of the measured grain, indexed by the cells' clean luma
  cells = lambda a: _cells(a.astype(np.float64))
  luma_term = (cells(y_norm), cells(y_has) == 1.0, y_resid) if luma_on else None
  cell_trusted = [cells(t) == 1.0 for t in trusted]
  chroma = [_fit_chroma(cells(grain[..., i]), cells(luma), cell_trusted, luma_term, lag, min_pixels)
            for i in (1, 2)]
  return _code(lag, (y_x, y_std, y_coeffs) if luma_on else None, chroma, random_seed, overlap)


def _fit_chroma(grain, luma, trusted, luma_term, lag, min_pixels):
  """(xs, σs, AR coefficients with the luma term last) of one 4:2:0 chroma plane, or None without
  grain. luma_term: (2x2 means of the luma's normalised grain, where valid, its residual variance)."""
  xs, stds = _scaling_curve(grain, luma, CHROMA_POINTS, min_pixels, trusted[0])
  if stds.size == 0 or _model_std(stds).max() < NO_GRAIN_STD:
    return None
  norm, has = _normalise(grain, luma, xs, stds)
  if luma_term is None:  # AV1 adds the luma term only when luma has grain
    return xs, stds, np.append(_ar_fit(norm, [has & t for t in trusted], lag)[0], 0.0)
  luma_norm, luma_has, luma_resid = luma_term
  coeffs, resid = _ar_fit(norm, [has & luma_has & t for t in trusted], lag, luma_norm)
  coeffs[-1] *= np.sqrt(luma_resid / resid)  # β on the normalised scale -> b on the templates' scale
  return xs, stds, coeffs


# ---- measurement ------------------------------------------------------------------------------

def _as_float(image):
  a = np.asarray(image)
  return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def _ycc_codes(image, name):
  a = _as_float(image)
  if a.ndim != 3 or a.shape[-1] != 3:
    raise UserError(f"fit_film_grain: {name} must be an RGB image (H, W, 3), got shape {a.shape}")
  return (a * 255.0) @ RGB_TO_YCBCR.T


def _trust_levels(clean, grainy):
  """Pixel masks, most trusted first: grain the [0, 1] clip cannot have cut (every clean RGB value
  CLIP_MARGIN grain stds inside the range, no grainy value at a bound); grain not clipped; all.
  Synthesis clips again, so σ measured where the clip acts would count it twice; dark or saturated
  images may leave too few pixels in the first masks for an AR fit, which then takes the next."""
  unclipped = np.all((grainy > 0) & (grainy < 1), axis=-1)
  margin = CLIP_MARGIN * float(np.std(grainy - clean, axis=(0, 1)).max())
  inside = unclipped & np.all((clean > margin) & (clean < 1 - margin), axis=-1)
  return inside, unclipped, np.ones_like(unclipped)


def _cells(plane):
  """2x2 means (4:2:0 cells) of an (H, W) plane, odd edges dropped."""
  h, w = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
  return plane[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))


def _scaling_curve(grain, luma, n_bins, min_pixels, safe):
  """(integer luma positions, strictly increasing; grain std at each): equal-count bins of luma,
  those with at least min_pixels pixels, bins landing on the same integer luma pooled. A bin's std
  comes from its `safe` pixels when it has min_pixels of them, else from all its pixels."""
  g, lu, safe = grain.ravel(), luma.ravel(), safe.ravel()
  n_bins = max(1, min(n_bins, lu.size // max(min_pixels, 1)))
  edges = np.quantile(lu, np.linspace(0.0, 1.0, n_bins + 1))
  index = np.clip(np.searchsorted(edges, lu, side="right") - 1, 0, n_bins - 1)
  sums = lambda v, sel: np.bincount(index[sel], v[sel], minlength=n_bins)
  every = np.ones(lu.size, bool)
  count, count_safe = sums(np.ones(lu.size), every), sums(np.ones(lu.size), safe)
  use_safe = count_safe >= max(min_pixels, 2)
  pick = lambda v: np.where(use_safe, sums(v, safe), sums(v, every))
  n, s1, s2 = pick(np.ones(lu.size)), pick(g), pick(g * g)
  keep = count >= max(min_pixels, 2)
  x = np.round(sums(lu, every)[keep] / count[keep]).astype(np.int64)
  x, group = np.unique(x, return_inverse=True)
  n, s1, s2 = (np.bincount(group, v[keep]) for v in (n, s1, s2))
  return x, np.sqrt(np.maximum(s2 / n - (s1 / n) ** 2, 0.0))


def _model_std(measured_std):
  """The std the scaling function must give before the synthesis rounds (its 1/12 code² added)."""
  return np.sqrt(np.maximum(np.square(measured_std) - _ROUNDING_VAR, 0.0))


def _normalise(grain, luma, xs, stds):
  """(grain / σ(luma), where σ is at least a tenth of its peak: elsewhere the ratio is noise)."""
  sigma = np.interp(luma, xs, stds)
  has_grain = sigma >= 0.1 * stds.max()
  return np.where(has_grain, grain / np.where(has_grain, sigma, 1.0), 0.0), has_grain


def ar_offsets(lag):
  """(dy, dx) of the AR coefficients in the spec's order: rows −lag..−1 at columns −lag..lag,
  then row 0 at columns −lag..−1."""
  return [(dy, dx) for dy in range(-lag, 1) for dx in range(-lag, lag + 1) if dy < 0 or dx < 0]


def _ar_fit(field, masks, lag, extra=None):
  """(coefficients, residual variance) of the least-squares causal AR fit of `field`, over the
  pixels of the first of `masks` (most trusted first) whose complete neighbourhoods are enough."""
  h, w = field.shape
  offsets = ar_offsets(lag)
  n_coeffs = len(offsets) + (extra is not None)
  shifted = lambda a, dy, dx: a[lag + dy:h + dy, lag + dx:w - lag + dx]
  for valid in masks:
    ok = shifted(valid, 0, 0).copy()
    for dy, dx in offsets:
      ok &= shifted(valid, dy, dx)
    if ok.sum() >= max(4 * n_coeffs, 16):
      break
  else:
    raise UserError(f"fit_film_grain: only {int(ok.sum())} usable pixels for an AR fit of lag {lag}: "
                    "the image is too small or has too little grain")
  target = shifted(field, 0, 0)[ok]
  columns = [shifted(field, dy, dx)[ok] for dy, dx in offsets]
  if extra is not None:
    columns.append(shifted(extra, 0, 0)[ok])
  if not columns:
    return np.zeros(0), float(np.mean(target ** 2))
  design = np.stack(columns, 1)
  gram = design.T @ design
  coeffs = np.linalg.solve(gram + 1e-9 * np.trace(gram) * np.eye(n_coeffs), design.T @ target)
  return coeffs, float(np.mean(np.square(target - design @ coeffs)))


# ---- integer coding ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _white_templates(grain_scale_shift):
  """The synthesis' own white templates (luma 73x82, Cb and Cr 38x44) for _SIM_SEEDS, as float:
  round2(gaussian_sequence[LFSR numbers], 4 + grain_scale_shift), seeded as the spec seeds them."""
  shift = 4 + grain_scale_shift
  table = np.asarray(GAUSSIAN_SEQUENCE, np.int64)

  def draw(seeds, h, w):
    masks = _lfsr_masks(h * w, 11).astype(np.int64)
    bits = np.bitwise_count(masks[None] & seeds[:, None, None]).astype(np.int64) & 1
    index = np.sum(bits << np.arange(11), axis=-1)
    return ((table[index] + (1 << (shift - 1))) >> shift).reshape(len(seeds), h, w).astype(np.float64)
  return draw(_SIM_SEEDS, 73, 82), draw(_SIM_SEEDS ^ 0xB524, 38, 44), draw(_SIM_SEEDS ^ 0x49D8, 38, 44)


def simulate_template(coeffs, lag, white, extra=None):
  """The spec's template AR filter in float (no rounding or clipping) on white fields (..., H, W):
  rows 3.. and columns 3..W−4 become white + Σ_k coeffs_k · out[past_k] (+ extra there, already
  weighted); the border keeps its white values. Rows in sequence, each row's own recursion as a
  1-D IIR filter."""
  out = np.array(white, np.float64)
  h, w = out.shape[-2:]
  offsets = ar_offsets(lag)
  above = [(dy, dx, c) for (dy, dx), c in zip(offsets, coeffs) if dy < 0]
  left = [c for (dy, _), c in zip(offsets, coeffs) if dy == 0][::-1]  # dx = −1, −2, ..
  recursion = np.concatenate([[1.0], -np.asarray(left, np.float64)])
  for y in range(3, h):
    drive = out[..., y, 3:w - 3].copy()
    if extra is not None:
      drive += extra[..., y, 3:w - 3]
    for dy, dx, c in above:
      drive += c * out[..., y + dy, 3 + dx:w - 3 + dx]
    for j, c in enumerate(left, 1):  # the unfiltered border left of column 3
      drive[..., :j] += c * out[..., y, 3 - j:3]
    out[..., y, 3:w - 3] = signal.lfilter([1.0], recursion, drive, axis=-1)
  return out


def _template_stds(lag, y_coeffs, chroma_coeffs, grain_scale_shift):
  """Code-unit std of the luma and 4:2:0 chroma templates of quantised coefficients, measured like
  the grain is: within one template, over the window its blocks are cut from, mean over seeds."""
  white_y, white_cb, white_cr = _white_templates(grain_scale_shift)
  luma = simulate_template(y_coeffs, lag, white_y)
  within = lambda t, a, b: float(np.sqrt(np.mean(np.var(t[:, a:b, a:b], axis=(1, 2)))))
  out = [within(luma, 9, 73)]
  # the chroma AR's luma term: co-located 2x2 luma means at rows 3.., columns 3..40
  n = len(_SIM_SEEDS)
  cells = luma[:, 3:3 + 2 * 35, 3:3 + 2 * 38].reshape(n, 35, 2, 38, 2).mean((2, 4))
  luma_avg = np.zeros((n, 38, 44))
  luma_avg[:, 3:, 3:41] = cells
  for coeffs, white in zip(chroma_coeffs, (white_cb, white_cr)):
    if coeffs is None:
      out.append(None)
      continue
    out.append(within(simulate_template(coeffs[:-1], lag, white, coeffs[-1] * luma_avg), 6, 38))
  return out


def _code(lag, luma, chroma, random_seed, overlap):
  """FilmGrainParams from the float fits: luma (xs, stds, coeffs) or None; chroma a list of the
  same or None per plane."""
  n_pos = 2 * lag * (lag + 1)
  y_coeffs = luma[2] if luma else np.zeros(n_pos)
  floats = [y_coeffs] + [c[2] for c in chroma if c is not None]
  peak = max([float(np.max(np.abs(c))) for c in floats if c.size] + [0.0])
  ar_shift = max([s for s in range(6, 10) if peak * (1 << s) <= 127.5] + [6])
  quantise = lambda c: np.clip(np.round(c * (1 << ar_shift)), -128, 127).astype(np.int64)
  y_int = quantise(y_coeffs)
  c_int = [None if c is None else quantise(c[2]) for c in chroma]
  stds = functools.partial(_template_stds, lag, y_int / (1 << ar_shift),
                           [None if c is None else c / (1 << ar_shift) for c in c_int])
  planes = [luma] + list(chroma)
  # each grain_scale_shift step halves the white noise: the first whose templates stay unclipped
  template_std = stds(0)
  peak_std = max([t for t, p in zip(template_std, planes) if p is not None] + [0.0])
  grain_scale_shift = min(3, max(0, int(np.ceil(np.log2(max(peak_std, 1e-9) / MAX_TEMPLATE_STD)))))
  if grain_scale_shift:
    template_std = stds(grain_scale_shift)

  def scaling(shift):  # per plane: (xs, scaling values) or None
    return [None if p is None else (p[0], _model_std(p[1]) * (1 << shift) / t)
            for p, t in zip(planes, template_std)]
  peaks = lambda sc: max([float(v.max()) for _, v in filter(None, sc)] + [0.0])
  scaling_shift = max([s for s in range(8, 12) if peaks(scaling(s)) <= 255.5] + [8])
  as_points = lambda xs, ys: tuple(zip(xs.tolist(), np.clip(np.round(ys), 0, 255).astype(int).tolist()))
  points = [() if sc is None else as_points(*sc) for sc in scaling(scaling_shift)]
  zeros = (0,) * (n_pos + 1)
  return FilmGrainParams(
      random_seed=int(random_seed) & 0xFFFF, ar_coeff_lag=lag, ar_coeff_shift=ar_shift,
      grain_scale_shift=grain_scale_shift, scaling_shift=scaling_shift, overlap_flag=int(bool(overlap)),
      scaling_points_y=points[0], scaling_points_cb=points[1], scaling_points_cr=points[2],
      ar_coeffs_y=tuple(y_int.tolist()),
      ar_coeffs_cb=zeros if c_int[0] is None else tuple(c_int[0].tolist()),
      ar_coeffs_cr=zeros if c_int[1] is None else tuple(c_int[1].tolist()))
