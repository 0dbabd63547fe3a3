"""Contract of every procedural degradation family registered by jaxdeg.degrade.

Each type is compiled once, on a grid of 2 photos × 3 keys × 4 intensities; the assertions then
read that grid. Keys are shared across intensities so strengths are compared on the same draw.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import degrade
from jaxdeg.metrics.image_quality import psnr

FAMILIES = ("haze", "rain", "snow", "motion_blur", "low_light", "raindrop", "gaussian_noise", "poisson_noise",
            "speckle_noise", "pink_noise", "gaussian_blur", "defocus_blur", "sinc", "resize", "exposure",
            "inpaint_mask")
PIPELINES = ("realesrgan", "bsrgan", "wqi", "mixture")
DETERMINISTIC = ("gaussian_blur", "defocus_blur", "sinc")
INTENSITIES = (0.0, 0.25, 0.5, 1.0)
N_KEYS = 3
SIZE = 48


@functools.lru_cache(maxsize=None)
def photos(size=SIZE):
  """astronaut and chelsea from scikit-image, size², float32 in [0, 1]."""
  from skimage import data, transform
  return np.stack([transform.resize(getattr(data, n)(), (size, size), anti_aliasing=True).astype(np.float32)
                   for n in ("astronaut", "chelsea")])


def grid_inputs():
  imgs = photos()
  p, k, i = np.meshgrid(np.arange(len(imgs)), np.arange(N_KEYS), np.arange(len(INTENSITIES)), indexing="ij")
  p, k, i = p.ravel(), k.ravel(), i.ravel()
  keys = jax.random.split(jax.random.key(7), N_KEYS)[k]
  return keys, imgs[p], np.asarray(INTENSITIES, np.float32)[i], (len(imgs), N_KEYS, len(INTENSITIES))


@functools.lru_cache(maxsize=None)
def grid(name):
  """(outputs reshaped to photos × keys × intensities × H × W × 3, params) for one type."""
  keys, imgs, intens, shape = grid_inputs()
  # Behaviour, not speed, is under test: a low XLA optimisation level compiles 2-3x faster.
  fn = jax.jit(jax.vmap(degrade.get(name)), compiler_options={"xla_backend_optimization_level": 0})
  out, params = fn(keys, imgs, intens)
  return np.asarray(out).reshape(shape + imgs.shape[1:]), params


def test_every_family_is_registered():
  assert set(FAMILIES + PIPELINES) <= set(degrade.available())


@pytest.mark.parametrize("name", FAMILIES)
def test_output_is_finite_float_in_unit_range(name):
  out, _ = grid(name)
  assert out.dtype == np.float32 and out.shape[-3:] == (SIZE, SIZE, 3)
  assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", FAMILIES)
def test_intensity_zero_returns_the_input(name):
  out, _ = grid(name)
  clean = photos()[:, None]
  assert float(jnp.min(psnr(out[:, :, 0], clean))) >= 50.0


@pytest.mark.parametrize("name", FAMILIES)
def test_psnr_falls_strictly_with_intensity(name):
  out, _ = grid(name)
  clean = photos()[:, None, None]
  mean_psnr = np.asarray(psnr(out[:, :, 1:], clean)).mean(axis=(0, 1))
  assert mean_psnr[0] > mean_psnr[1] > mean_psnr[2], mean_psnr


@pytest.mark.parametrize("name", [n for n in FAMILIES if n not in DETERMINISTIC])
def test_other_key_gives_other_output(name):
  out, _ = grid(name)
  strongest = out[:, :, -1]
  # Some types draw from few outcomes (resize: 3 modes), so ask that the keys do not all agree.
  assert max(np.abs(strongest[:, i] - strongest[:, j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 1e-3


@pytest.mark.parametrize("name", FAMILIES)
def test_eager_single_calls_match_the_jitted_batch(name):
  """jit = eager, vmap = loop: two grid entries recomputed one by one without jit."""
  out, params = grid(name)
  keys, imgs, intens, shape = grid_inputs()
  fn = degrade.get(name)
  for flat in (np.ravel_multi_index((0, 1, 2), shape), np.ravel_multi_index((1, 2, 3), shape)):
    eager, eager_params = fn(keys[flat], jnp.asarray(imgs[flat]), jnp.asarray(intens[flat]))
    batched = out.reshape((-1,) + out.shape[-3:])[flat]
    diff = np.abs(np.asarray(eager) - batched)
    # Rounding stages (8-bit output, JPEG) may flip a level where jit fuses arithmetic differently.
    assert diff.mean() < 1e-4 and np.quantile(diff, 0.999) < 5e-3, (diff.mean(), diff.max())
    for k, v in eager_params.items():
      if not isinstance(v, dict):
        np.testing.assert_allclose(np.asarray(v, np.float32), np.asarray(params[k][flat], np.float32), atol=1e-5)


def test_same_key_same_output():
  fn = jax.jit(degrade.get("rain"))
  img = jnp.asarray(photos()[0])
  a, _ = fn(jax.random.key(3), img, 0.7)
  b, _ = fn(jax.random.key(3), img, 0.7)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_apply_on_a_batch_is_a_loop_of_single_calls_with_the_split_keys():
  imgs = photos()
  key = jax.random.key(11)
  intens = jnp.asarray([0.3, 0.9])
  out, params = jax.jit(lambda k, x, t: degrade.apply(k, x, "gaussian_noise", t))(key, imgs, intens)
  single = jax.jit(degrade.get("gaussian_noise"))
  for i, k in enumerate(jax.random.split(key, 2)):
    ref, ref_params = single(k, imgs[i], intens[i])
    np.testing.assert_allclose(np.asarray(out[i]), np.asarray(ref), atol=1e-6)
    np.testing.assert_allclose(params["sigma"][i], ref_params["sigma"])


def test_apply_keeps_leading_batch_dims():
  imgs = np.broadcast_to(photos()[0], (2, 3, SIZE, SIZE, 3))
  out, params = degrade.apply(jax.random.key(0), imgs, "gaussian_blur", 0.5)
  assert out.shape == imgs.shape and params["sigma_x"].shape == (2, 3)
