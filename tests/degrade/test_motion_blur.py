"""The motion-blur PSF window: large enough for every camera path, so the blur never clips one."""
import jax
import numpy as np

from jaxdeg import degrade
from jaxdeg.degrade import motion_blur
from jaxdeg.degrade._ops import Stream


def test_the_default_window_holds_every_full_length_path():
  length = motion_blur.MAX_LENGTH_FRACTION * 256
  size = motion_blur.psf_size(length)
  big, m = 3 * size, size  # the default window sits at [m, 2m) inside the big one
  for key in jax.random.split(jax.random.key(0), 64):
    path = motion_blur.trajectory(Stream(key, 4 + 4 * motion_blur.STEPS)) * length
    small_psf = np.asarray(motion_blur.splat_kernel(size, path))
    big_psf = np.asarray(motion_blur.splat_kernel(big, path))
    np.testing.assert_allclose(big_psf[m:2 * m, m:2 * m], small_psf, atol=1e-6)
    assert big_psf[m:2 * m, m:2 * m].sum() > 1 - 1e-5  # nothing of the path outside the window


def test_motion_blur_in_the_default_window_equals_a_wide_one():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(4, 64, 64, 3)).astype(np.float32)
  key = jax.random.key(3)
  ours, params = degrade.apply(key, images, "motion_blur", 1.0)
  wide, _ = degrade.apply(key, images, "motion_blur", 1.0, size=61)
  assert params["length"][0] == np.float32(6.4)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(wide), atol=2e-6)
