"""Film grain statistics: how closely generated grain matches real grain on the same content.

Grain is measured in full-range BT.601 YCbCr (JFIF, the matrix `film_grain` adds its grain in) on
[0, 1]: grain = YCbCr(grainy) − YCbCr(clean), channels (Y, Cb, Cr), chroma offsets cancelling.
Luma bins are indexed by the clean image's Y (AV1 scales grain by the pre-grain intensity; chroma
curves use the same clean luma). Three statistics, each comparing real grain with generated grain:

- std-vs-luma curve: per bin b of K equal bins of clean Y over [0, 1], σ_b = std(grain in b);
  bins with fewer than `min_pixels` pixels are ignored. curve error = mean_b |σ_b(gen) − σ_b(real)|
  over the bins both curves have; relative = that / mean_b σ_b(real) over the same bins.
- power-spectrum distance: radially averaged power spectrum of the mean-removed, 2-D Hann-windowed
  grain, P(ρ) = mean over the ring ρ of |FFT|² / Σw² (rings of equal width over (0, 0.5]
  cycles/pixel, DC excluded, min(H, W)//4 of them); distance = sqrt(mean_ρ (ln P_gen − ln P_real)²).
  A ring with power in only one of the two makes the distance infinite (e.g. no grain at all).
- histogram JSD: Jensen–Shannon divergence, base 2 (0 for equal, 1 for disjoint), of grain-value
  histograms with `bins` equal bins over [−limit, limit]; values beyond it count in the end bins.

Everything is numpy float64 on host arrays: the statistics are evaluation numbers, not losses.
"""
import numpy as np

from jaxdeg.errors import UserError

CHANNELS = ("Y", "Cb", "Cr")
LUMA_BINS = 16
MIN_PIXELS = 64
HIST_BINS = 64
HIST_LIMIT = 0.25
STATS = ("curve_error", "curve_error_rel", "spectrum_distance", "jsd")

# JFIF YCbCr (jaxdeg.degrade.jpeg's matrix) without the chroma offsets: they cancel in differences
RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                        [-0.168735892, -0.331264108, 0.5],
                        [0.5, -0.418687589, -0.081312411]])


def _rgb(image, name):
  a = np.asarray(image)
  if a.ndim != 3 or a.shape[-1] != 3:
    raise UserError(f"grain_stats: {name} must be an RGB image (H, W, 3), got shape {a.shape}")
  if a.dtype == np.uint8:
    return a.astype(np.float64) / 255.0
  return a.astype(np.float64)


def grain_and_luma(clean, grainy):
  """(grain (H, W, 3) as Y, Cb, Cr differences, clean luma (H, W)), both on the [0, 1] scale."""
  clean, grainy = _rgb(clean, "clean"), _rgb(grainy, "grainy")
  if clean.shape != grainy.shape:
    raise UserError(f"grain_stats: clean {clean.shape} and grainy {grainy.shape} images differ in shape")
  return (grainy - clean) @ RGB_TO_YCBCR.T, clean @ RGB_TO_YCBCR[0]


def std_vs_luma(grain, luma, bins=LUMA_BINS, min_pixels=MIN_PIXELS):
  """(σ per luma bin, pixel count per bin): std of `grain` over the pixels whose `luma` falls in
  each of `bins` equal bins of [0, 1]; NaN where a bin has fewer than `min_pixels` pixels."""
  grain, luma = np.asarray(grain, np.float64).ravel(), np.asarray(luma, np.float64).ravel()
  index = np.clip((luma * bins).astype(np.int64), 0, bins - 1)
  count = np.bincount(index, minlength=bins)
  total = np.bincount(index, grain, minlength=bins)
  squares = np.bincount(index, grain * grain, minlength=bins)
  enough = count >= max(min_pixels, 2)
  safe = np.maximum(count, 1)
  var = np.maximum(squares / safe - (total / safe) ** 2, 0.0)
  return np.where(enough, np.sqrt(var), np.nan), count


def curve_error(real_curve, generated_curve):
  """(mean |σ_gen − σ_real| over bins both curves have, that / mean σ_real there); NaN if none."""
  real, gen = np.asarray(real_curve, np.float64), np.asarray(generated_curve, np.float64)
  both = np.isfinite(real) & np.isfinite(gen)
  if not both.any():
    return float("nan"), float("nan")
  err = float(np.mean(np.abs(gen[both] - real[both])))
  scale = float(np.mean(real[both]))
  return err, (err / scale if scale > 0 else float("nan"))


def radial_power_spectrum(grain, rings=None):
  """Mean power per frequency ring of a 2-D grain field (mean removed, Hann window), (rings,)."""
  g = np.asarray(grain, np.float64)
  h, w = g.shape
  rings = rings or max(min(h, w) // 4, 1)
  window = np.outer(np.hanning(h), np.hanning(w))
  power = np.abs(np.fft.fft2((g - g.mean()) * window)) ** 2 / np.sum(window ** 2)
  radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
  inside = (radius > 0) & (radius <= 0.5)
  ring = np.minimum((radius[inside] * 2 * rings).astype(np.int64), rings - 1)
  count = np.bincount(ring, minlength=rings)
  return np.bincount(ring, power[inside], minlength=rings) / np.maximum(count, 1)


def spectrum_distance(real_grain, generated_grain):
  """RMS over frequency rings of ln(P_gen / P_real); 0 for equal spectra, inf when a ring has
  power in only one of them."""
  real, gen = radial_power_spectrum(real_grain), radial_power_spectrum(generated_grain)
  zero_real, zero_gen = real <= 0, gen <= 0
  if np.any(zero_real != zero_gen):
    return float("inf")
  keep = ~zero_real
  if not keep.any():
    return 0.0
  return float(np.sqrt(np.mean(np.square(np.log(gen[keep]) - np.log(real[keep])))))


def histogram(grain, bins=HIST_BINS, limit=HIST_LIMIT):
  """Normalised histogram of grain values over [−limit, limit] (outliers in the end bins)."""
  g = np.clip(np.asarray(grain, np.float64).ravel(), -limit, limit)
  counts, _ = np.histogram(g, bins=bins, range=(-limit, limit))
  return counts / max(counts.sum(), 1)


def jsd(p, q):
  """Jensen–Shannon divergence of two distributions, base 2 (in [0, 1]); 0·log 0 = 0."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  p, q = p / p.sum(), q / q.sum()
  m = 0.5 * (p + q)

  def kl(a):
    on = a > 0
    return float(np.sum(a[on] * np.log2(a[on] / m[on])))
  return 0.5 * kl(p) + 0.5 * kl(q)


def histogram_jsd(real_grain, generated_grain, bins=HIST_BINS, limit=HIST_LIMIT):
  return jsd(histogram(real_grain, bins, limit), histogram(generated_grain, bins, limit))


def compare(real_clean, real_grainy, generated_clean, generated_grainy, channels=CHANNELS,
            bins=LUMA_BINS, min_pixels=MIN_PIXELS):
  """The three statistics of generated grain against real grain, per channel:
  {channel: {curve_error, curve_error_rel, spectrum_distance, jsd}}. The two pairs may have
  different clean images (each pair's grain is binned by its own clean luma) but same sizes
  make the spectra comparable ring by ring."""
  real, real_luma = grain_and_luma(real_clean, real_grainy)
  gen, gen_luma = grain_and_luma(generated_clean, generated_grainy)
  if real.shape != gen.shape:
    raise UserError(f"grain_stats.compare: real pair {real.shape[:2]} and generated pair "
                    f"{gen.shape[:2]} differ in size")
  out = {}
  for c in channels:
    if c not in CHANNELS:
      raise UserError(f"grain_stats.compare: unknown channel {c!r}; expected some of {CHANNELS}")
    i = CHANNELS.index(c)
    err, rel = curve_error(std_vs_luma(real[..., i], real_luma, bins, min_pixels)[0],
                           std_vs_luma(gen[..., i], gen_luma, bins, min_pixels)[0])
    out[c] = {"curve_error": err, "curve_error_rel": rel,
              "spectrum_distance": spectrum_distance(real[..., i], gen[..., i]),
              "jsd": histogram_jsd(real[..., i], gen[..., i])}
  return out
