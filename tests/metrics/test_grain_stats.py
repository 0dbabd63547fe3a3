"""Grain statistics against hand-computed cases."""
import numpy as np
import pytest

from jaxdeg.errors import UserError
from jaxdeg.metrics import grain_stats as gs

SIZE = 256


def ramp(lo=0.1, hi=0.9, size=SIZE):
  """A grey horizontal ramp: luma = the grey level, every luma bin of [lo, hi] well filled."""
  row = np.linspace(lo, hi, size)
  return np.repeat(np.broadcast_to(row, (size, size))[..., None], 3, axis=-1).copy()


def grey_noise(std, seed, size=SIZE):
  """The same Gaussian value on R, G and B: luma grain of `std`, no chroma grain."""
  n = np.random.default_rng(seed).normal(0.0, std, (size, size))
  return np.repeat(n[..., None], 3, axis=-1)


def test_identical_grain_scores_zero_on_every_channel():
  clean = ramp()
  grainy = clean + np.random.default_rng(0).normal(0, 0.02, clean.shape)
  stats = gs.compare(clean, grainy, clean, grainy.copy())
  for channel in gs.CHANNELS:
    assert stats[channel] == {"curve_error": 0.0, "curve_error_rel": 0.0, "spectrum_distance": 0.0, "jsd": 0.0}


def test_jsd_is_one_for_disjoint_histograms_and_matches_a_hand_computed_case():
  assert gs.histogram_jsd(np.full(100, -0.2), np.full(100, 0.2)) == pytest.approx(1.0, abs=1e-12)
  # p = (1, 0), q = (½, ½), m = (¾, ¼): ½·log2(4/3) + ½·(½·log2(2/3) + ½·log2(2))
  want = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5)
  assert gs.jsd([1, 0], [0.5, 0.5]) == pytest.approx(want, abs=1e-12)
  assert gs.jsd([0.5, 0.5], [1, 0]) == pytest.approx(want, abs=1e-12)
  # values beyond ±limit count in the end bins instead of vanishing
  assert gs.histogram(np.array([-5.0, 5.0]), bins=4)[[0, -1]].tolist() == [0.5, 0.5]


def test_white_noise_gives_a_flat_curve_at_its_std():
  s = 0.02
  curve, count = gs.std_vs_luma(grey_noise(s, 1)[..., 0], ramp()[..., 0])
  filled = count >= gs.MIN_PIXELS
  # the ramp covers bins 1..14 of 16; the others hold no pixel and are ignored
  assert filled.tolist() == [False] + [True] * 14 + [False]
  assert np.all(np.isnan(curve[~filled]))
  np.testing.assert_allclose(curve[filled], s, rtol=0.05)
  # through compare(): Y carries the grain, grey noise has no chroma
  y, luma = gs.grain_and_luma(ramp(), ramp() + grey_noise(s, 1))
  assert np.abs(y[..., 1:]).max() < 1e-12 and abs(np.std(y[..., 0]) - s) < 0.05 * s


def test_curve_error_of_doubled_grain_is_the_std_itself():
  clean, noise = ramp(), grey_noise(0.01, 2)
  stats = gs.compare(clean, clean + noise, clean, clean + 2 * noise)["Y"]
  curve = gs.std_vs_luma(noise[..., 0], clean[..., 0])[0]
  assert stats["curve_error"] == pytest.approx(np.nanmean(curve), rel=1e-9)
  assert stats["curve_error_rel"] == pytest.approx(1.0, rel=1e-9)
  # a doubled field has 4× the power at every frequency: distance ln 4
  assert stats["spectrum_distance"] == pytest.approx(np.log(4.0), rel=1e-9)


def test_bins_with_too_few_pixels_are_ignored():
  luma = np.concatenate([np.full(100, 0.05), np.full(10, 0.55)])
  grain = np.random.default_rng(3).normal(0, 0.01, luma.size)
  curve, count = gs.std_vs_luma(grain, luma, bins=16, min_pixels=64)
  assert count[0] == 100 and count[8] == 10 and np.isfinite(curve[0]) and np.isnan(curve[8])
  assert all(np.isnan(v) for v in gs.curve_error([np.nan, 0.1], [0.2, np.nan]))  # no bin in common


def test_blurred_noise_is_further_in_spectrum_than_another_white_draw():
  white, other = (np.random.default_rng(s).normal(0, 0.02, (SIZE, SIZE)) for s in (4, 5))
  # 3x3 box blur (periodic): power falls at high frequencies
  blurred = sum(np.roll(np.roll(white, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
  blurred *= white.std() / blurred.std()  # same variance: only the shape differs
  d_white, d_blur = gs.spectrum_distance(white, other), gs.spectrum_distance(white, blurred)
  print(f"spectrum distance white/white {d_white:.3f}, white/blurred {d_blur:.3f}")
  assert d_blur > 3 * d_white


def test_no_grain_at_all_is_maximally_far():
  clean, noise = ramp(), grey_noise(0.02, 6)
  stats = gs.compare(clean, clean + noise, clean, clean)["Y"]
  assert stats["curve_error_rel"] == pytest.approx(1.0)
  assert stats["spectrum_distance"] == float("inf")
  assert stats["jsd"] > 0.5


def test_bad_input_names_the_problem():
  with pytest.raises(UserError, match="differ in shape"):
    gs.grain_and_luma(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
  with pytest.raises(UserError, match=r"RGB image \(H, W, 3\)"):
    gs.grain_and_luma(np.zeros((8, 8)), np.zeros((8, 8)))
  with pytest.raises(UserError, match="differ in size"):
    gs.compare(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), np.zeros((9, 8, 3)), np.zeros((9, 8, 3)))
  with pytest.raises(UserError, match="unknown channel"):
    gs.compare(*[np.zeros((8, 8, 3))] * 4, channels=("G",))
