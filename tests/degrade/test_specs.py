"""Degradation specs (apply_spec), overrides and the errors bad specs raise."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdeg import degrade
from jaxdeg.degrade.pipelines import apply_spec
from jaxdeg.degrade.registry import parse_spec
from jaxdeg.errors import ConfigError
from tests.degrade.test_families import photos


def test_single_spec_applies_the_named_degradation_with_overrides():
  imgs = photos(32)
  key = jax.random.key(0)
  spec = {"name": "gaussian_noise", "intensity": 0.5, "sigma": 0.05}
  out, params = jax.jit(lambda k, x: apply_spec(k, x, spec))(key, imgs)
  assert out.shape == imgs.shape
  np.testing.assert_allclose(params["sigma"], [0.05, 0.05])
  np.testing.assert_allclose(params["intensity"], [0.5, 0.5])
  assert bool(params["applied"].all())


def test_list_spec_runs_stages_in_order_and_keys_params_by_stage():
  imgs = photos(32)
  spec = [{"name": "gaussian_blur", "sigma": 1.0}, {"name": "gaussian_noise", "intensity": [0.2, 0.4]}]
  out, params = jax.jit(lambda k, x: apply_spec(k, x, spec))(jax.random.key(1), imgs)
  assert set(params) == {"0_gaussian_blur", "1_gaussian_noise"}
  inten = np.asarray(params["1_gaussian_noise"]["intensity"])
  assert ((inten >= 0.2) & (inten <= 0.4)).all() and inten[0] != inten[1]
  np.testing.assert_allclose(params["1_gaussian_noise"]["sigma"], 0.2 * inten, rtol=1e-6)


def test_config_dict_spec_and_probability():
  imgs = np.broadcast_to(photos(32)[0], (16, 32, 32, 3))
  spec = ml_collections.ConfigDict({"name": "gaussian_noise", "intensity": 1.0, "p": 0.5})
  out, params = jax.jit(lambda k, x: apply_spec(k, x, spec))(jax.random.key(2), imgs)
  applied = np.asarray(params["applied"])
  assert 0 < applied.sum() < 16
  untouched = np.abs(np.asarray(out) - imgs).max(axis=(1, 2, 3)) == 0
  np.testing.assert_array_equal(untouched, ~applied)


def test_spec_is_jittable():
  imgs = photos(32)
  fn = jax.jit(lambda k, x: apply_spec(k, x, [{"name": "resize", "intensity": 0.5}, "exposure"]))
  out, _ = fn(jax.random.key(3), imgs)
  assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("spec, message", [
    ({"intensity": 0.5}, "missing 'name'"),
    ({"name": "hail"}, "unknown degradation 'hail'"),
    ({"name": "haze", "intensity": 1.5}, "'intensity' must be"),
    ({"name": "haze", "intensity": [0.2, 0.4, 0.6]}, "'intensity' must be"),
    ({"name": "haze", "p": 2}, "'p' must be a probability"),
    ([{"name": "haze"}, 3], r"spec\[1\]: expected a dict"),
])
def test_bad_specs_name_the_field(spec, message):
  with pytest.raises(ConfigError, match=message):
    parse_spec(spec)


def test_unknown_override_is_rejected_with_the_known_ones():
  with pytest.raises(ConfigError, match=r"'haze': unknown parameter\(s\) 'betta'; known: beta"):
    degrade.apply(jax.random.key(0), photos(32), "haze", 0.5, betta=1.0)


def test_resize_rejects_unknown_mode():
  with pytest.raises(ConfigError, match="mode must be one of area, bilinear, bicubic"):
    degrade.get("resize")(jax.random.key(0), photos(32)[0], 0.5, mode="lanczos")


def test_mixture_rejects_bad_k():
  with pytest.raises(ConfigError, match="k must be in"):
    degrade.get("mixture")(jax.random.key(0), photos(32)[0], 0.5, types=["haze", "rain"], k=3)


def test_physical_overrides_take_effect():
  img = jnp.asarray(photos(32)[0])
  key = jax.random.key(4)

  def run(name, image, **overrides):
    return jax.jit(lambda k, x: degrade.get(name)(k, x, 0.0 if overrides else 1.0, **overrides))(key, image)

  # A constant depth map makes haze a plain blend with the airlight.
  out, params = run("haze", img, beta=1.0, depth=np.ones((32, 32)), airlight=0.8)
  t = np.exp(-1.0)
  np.testing.assert_allclose(np.asarray(out), np.asarray(img) * t + 0.8 * (1 - t), atol=1e-5)
  # Anisotropic blur along x leaves a horizontally constant image untouched.
  stripes = jnp.broadcast_to(jnp.linspace(0, 1, 32)[:, None, None], (32, 32, 3))
  blurred, params = run("gaussian_blur", stripes, sigma_x=3.0, sigma_y=0.01, theta=0.0)
  np.testing.assert_allclose(np.asarray(blurred), np.asarray(stripes), atol=1e-5)
  assert float(params["sigma_x"]) == 3.0
  # Inpainting returns its mask, and holes are zero when filled with zeros.
  out, params = jax.jit(lambda k, x: degrade.get("inpaint_mask")(k, x, 1.0, fill=0.0))(key, img)
  mask = np.asarray(params["mask"]) > 0.5
  assert mask.shape == (32, 32) and 0 < mask.mean() < 1
  assert np.all(np.asarray(out)[mask] == 0) and np.array_equal(np.asarray(out)[~mask], np.asarray(img)[~mask])


def test_pipelines_run_without_jpeg_stages():
  img = jnp.asarray(photos(32)[0])
  out, _ = jax.jit(lambda k, x: degrade.get("realesrgan")(k, x, 1.0, jpeg=False))(jax.random.key(5), img)
  assert np.isfinite(np.asarray(out)).all() and float(jnp.abs(out - img).mean()) > 0.01
