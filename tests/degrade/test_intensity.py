"""GenDeg intensity statistics and their 129-way binning."""
import jax
import numpy as np
import pytest

from jaxdeg.degrade import intensity as gi


def gendeg_bin(value, lo, hi):
  """GenDeg's own rule: np.digitize on 129 edges, minus one, clipped to the last regular bin."""
  idx = np.digitize(value, np.linspace(lo, hi, 129), right=False) - 1
  return min(idx, 127)


def test_bins_match_gendeg_digitize():
  rng = np.random.default_rng(0)
  for value in np.concatenate([rng.uniform(0, 0.9, 400), [0.0, 0.69, 0.7, 0.95]]):
    assert int(gi.mu_bin(value)) == gendeg_bin(value, 0.0, 0.7), value
  for value in rng.uniform(0, 0.5, 400):
    assert int(gi.sigma_bin(value)) == gendeg_bin(value, 0.0, 0.4), value


def test_bin_bounds_contain_their_values():
  for value in (0.0, 0.123, 0.6999):
    lo, hi = gi.bin_bounds(gi.mu_bin(value), gi.MU_RANGE)
    assert float(lo) <= value < float(hi)


def test_one_hot_and_null_token():
  stats = gi.stats_one_hot(np.asarray([0.1, 0.2]), np.asarray([0.05, 0.3]), null=np.asarray([False, True]))
  assert stats.shape == (2, 2, 129)
  np.testing.assert_array_equal(np.asarray(stats).sum(-1), 1.0)
  assert int(np.argmax(stats[0, 0])) == int(gi.mu_bin(0.1))
  assert int(np.argmax(stats[0, 1])) == int(gi.sigma_bin(0.05))
  assert (np.argmax(np.asarray(stats[1]), -1) == gi.NULL_INDEX).all()
  np.testing.assert_array_equal(np.asarray(gi.null_stats((3,)))[..., gi.NULL_INDEX], 1.0)


def test_stats_are_mean_and_std_of_the_absolute_difference():
  rng = np.random.default_rng(1)
  clean = rng.uniform(0, 1, (2, 256, 256, 3)).astype(np.float32)
  degraded = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
  # At 256² the resize is the identity; 8-bit rounding is GenDeg's uint8 pipeline.
  mu, sigma = gi.intensity_stats(clean, degraded)
  q = lambda x: np.round(x * 255) / 255
  diff = np.abs(q(clean) - q(degraded))
  np.testing.assert_allclose(mu, diff.mean(axis=(1, 2, 3)), rtol=1e-4)
  np.testing.assert_allclose(sigma, diff.std(axis=(1, 2, 3)), rtol=1e-4)


def test_stats_resize_any_size_and_grow_with_intensity():
  from jaxdeg import degrade
  from tests.degrade.test_families import photos
  clean = photos(64)
  mus = []
  for t in (0.25, 1.0):
    out, _ = jax.jit(lambda k, x, t=t: degrade.apply(k, x, "haze", t))(jax.random.key(0), clean)
    mu, sigma = gi.intensity_stats(clean, out)
    assert mu.shape == (2,) and sigma.shape == (2,)
    mus.append(np.asarray(mu))
  assert (mus[1] > mus[0]).all() and (mus[0] > 0).all()


def test_stats_reject_mismatched_shapes():
  with pytest.raises(ValueError, match="differ in shape"):
    gi.intensity_stats(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
