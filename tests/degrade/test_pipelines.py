"""The composite recipes (Real-ESRGAN, BSRGAN, WQI, mixtures) under the families' contract.

Eager runs are left to the families they compose (an eager pipeline costs ~20 s of per-op
compiles); the grid below still checks range, identity at 0, monotone damage and key dependence.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import degrade
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr
from tests.degrade.test_families import PIPELINES, SIZE, grid, photos


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_contract(name):
  out, params = grid(name)
  assert out.dtype == np.float32 and out.shape[-3:] == (SIZE, SIZE, 3)
  assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
  clean = photos()[:, None]
  assert float(jnp.min(psnr(out[:, :, 0], clean))) >= 50.0
  mean_psnr = np.asarray(psnr(out[:, :, 1:], clean[:, :, None])).mean(axis=(0, 1))
  assert mean_psnr[0] > mean_psnr[1] > mean_psnr[2], mean_psnr
  strongest = out[:, :, -1]
  assert max(np.abs(strongest[:, i] - strongest[:, j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 1e-3


def test_realesrgan_resizes_within_published_ranges():
  _, params = grid("realesrgan")
  full = np.asarray(params["scale1"]).reshape(2, 3, 4)[..., -1]
  assert ((full >= 0.15) & (full <= 1.5)).all()
  assert ((np.asarray(params["scale2"]).reshape(2, 3, 4)[..., -1] >= 0.3)).all()


def test_mixture_applies_exactly_k_types():
  _, params = grid("mixture")
  assert (np.asarray(params["chosen"]).sum(-1) == 2).all()


def test_bsrgan_order_is_a_permutation():
  _, params = grid("bsrgan")
  order = np.sort(np.asarray(params["order"]), axis=-1)
  assert (order == np.arange(8)).all()


def _wqi_jit(**overrides):
  return jax.jit(jax.vmap(lambda k, im: degrade.get("wqi")(k, im, 1.0, **overrides)))


def test_wqi_side_scales_blur_as_for_a_crop_of_a_larger_photo():
  keys = jax.random.split(jax.random.PRNGKey(5), 12)
  crop = np.repeat(photos()[:1, 8:40, 8:40], 12, axis=0)  # one 32² crop, 12 draws
  own, p_own = _wqi_jit()(keys, crop)
  same, _ = _wqi_jit(side=32)(keys, crop)
  np.testing.assert_array_equal(np.asarray(own), np.asarray(same))  # `side` defaults to the image's
  big, p_big = _wqi_jit(side=256)(keys, crop)
  np.testing.assert_allclose(np.asarray(p_big["focus_radius"]), 8 * np.asarray(p_own["focus_radius"]), rtol=1e-5)
  blurred = np.asarray(p_own["applied"])[:, :2].any(axis=1)
  assert blurred.any() and (~blurred).any()
  damage = lambda x: np.asarray(psnr(x, crop))
  assert (damage(big)[blurred] < damage(own)[blurred]).all()  # larger blur on every blurred draw
  np.testing.assert_allclose(damage(big)[~blurred], damage(own)[~blurred], rtol=1e-5)
  with pytest.raises(ConfigError, match="side must be positive"):
    degrade.get("wqi")(keys[0], crop[0], 1.0, side=0)


def test_other_fields_keeps_parameters_and_redraws_noise():
  image = np.full((48, 48, 3), 0.5, np.float32)
  key = jax.random.PRNGKey(1)
  # an explicit argument: each value of it is its own traced function
  noisy = lambda k: np.asarray(jax.jit(lambda: degrade.apply(key, image, "gaussian_noise", 0.5,
                                                             other_fields=k)[0] - image)())
  holes = lambda k: jax.jit(lambda: degrade.apply(key, image, "inpaint_mask", 0.8, other_fields=k, fill=1.0))()
  a = noisy(0)
  b = noisy(1)
  hole_b, params_b = holes(1)
  c = noisy(2)
  hole_a, params_a = holes(0)
  assert 0.9 < b.std() / a.std() < 1.1 and abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05
  assert abs(np.corrcoef(b.ravel(), c.ravel())[0, 1]) < 0.05  # each value its own realisation
  np.testing.assert_array_equal(np.asarray(params_a["mask"]), np.asarray(params_b["mask"]))  # same holes
  inside = np.asarray(params_a["mask"]) > 0
  assert inside.any() and np.abs(np.asarray(hole_a) - np.asarray(hole_b))[inside].max() > 0.1  # other fill noise
  # 0 is the key's own fields, what a call without the argument draws
  plain = jax.jit(lambda: degrade.get("gaussian_noise")(key, image, 0.5)[0] - image)
  np.testing.assert_array_equal(noisy(0), np.asarray(plain()))
  # and through a spec, as the cdd task's procedural eval draws its references
  spec = [{"name": "gaussian_noise", "intensity": (0.2, 0.8)}]
  own, other = degrade.apply_spec(key, image, spec), degrade.apply_spec(key, image, spec, other_fields=1)
  np.testing.assert_array_equal(np.asarray(own[1]["0_gaussian_noise"]["sigma"]),
                                np.asarray(other[1]["0_gaussian_noise"]["sigma"]))
  assert np.abs(np.asarray(own[0]) - np.asarray(other[0])).max() > 0.1
  for bad in (-1, 2 ** 32, 1.5):
    with pytest.raises(ValueError, match="other_fields"):
      degrade.apply(key, image, "gaussian_noise", 0.5, other_fields=bad)
