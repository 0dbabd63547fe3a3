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

  def both_psfs(key):
    path = motion_blur.trajectory(Stream(key, 4 + 4 * motion_blur.STEPS)) * length
    return motion_blur.splat_kernel(size, path), motion_blur.splat_kernel(big, path)

  small_psfs, big_psfs = map(np.asarray, jax.jit(jax.vmap(both_psfs))(jax.random.split(jax.random.key(0), 256)))
  inside = big_psfs[:, m:2 * m, m:2 * m]
  np.testing.assert_allclose(inside, small_psfs, atol=1e-6)
  np.testing.assert_allclose(inside.sum((1, 2)), 1.0, atol=1e-5)  # nothing of a path outside the window


def test_motion_blur_in_the_default_window_equals_a_wide_one():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(4, 64, 64, 3)).astype(np.float32)
  key = jax.random.key(3)
  ours, params = degrade.apply(key, images, "motion_blur", 1.0)
  wide, _ = degrade.apply(key, images, "motion_blur", 1.0, size=61)
  assert params["length"][0] == np.float32(6.4)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(wide), atol=2e-6)
