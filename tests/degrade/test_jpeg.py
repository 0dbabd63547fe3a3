"""JPEG in JAX: parity with Pillow (libjpeg-turbo) on real photos, IJG tables, the degradation contract."""
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from skimage import data

from jaxdeg import degrade
from jaxdeg.degrade.jpeg import jpeg_roundtrip, quality_tables
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr

# Odd crops: the right/bottom edges exercise libjpeg's edge-replication padding. One shape for
# all, so every test shares one compiled round trip.
PHOTOS = {
  "astronaut": lambda: data.astronaut()[30:167, 150:353],
  "chelsea": lambda: data.chelsea()[40:177, 60:263],
  "coffee": lambda: data.coffee()[100:237, 200:403],
}


def _pillow(rgb_u8, quality, subsampling=2):
  buf = io.BytesIO()
  Image.fromarray(rgb_u8).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
  buf.seek(0)
  return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255.0


@pytest.mark.parametrize("quality", [1, 10, 30, 50, 75, 90, 100])
def test_quality_tables_match_libjpeg(quality):
  buf = io.BytesIO()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="JPEG", quality=quality)
  buf.seek(0)
  q = Image.open(buf).quantization
  ours = np.asarray(quality_tables(quality))
  np.testing.assert_array_equal(ours[0].ravel(), q[0])
  np.testing.assert_array_equal(ours[1].ravel(), q[1])


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_parity_with_pillow_420(name, record_property):
  rgb = PHOTOS[name]()
  for quality in (30, 60, 90):
    ref = _pillow(rgb, quality)
    ours = jpeg_roundtrip(jnp.asarray(rgb / 255.0, jnp.float32), quality, "420")
    score = float(psnr(ours, ref))
    record_property(f"psnr_vs_pillow_q{quality}", float(score))
    assert score >= 38.0, (name, quality, score)


def test_parity_with_pillow_444():
  rgb = PHOTOS["astronaut"]()
  ref = _pillow(rgb, 60, subsampling=0)
  ours = jpeg_roundtrip(jnp.asarray(rgb / 255.0, jnp.float32), 60, "444")
  assert float(psnr(ours, ref)) >= 38.0


def _jpeg(key, image, intensity, **kw):
  return degrade.get("jpeg")(key, image, intensity, **kw)


def _photo():
  return jnp.asarray(PHOTOS["chelsea"]() / 255.0, jnp.float32)


def test_intensity_zero_is_identity_and_mapping():
  img = _photo()
  out, params = _jpeg(jax.random.key(0), img, 0.0)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(img))
  assert float(params["quality"]) == 100.0
  out, params = _jpeg(jax.random.key(0), img, 1.0)
  assert float(params["quality"]) == 10.0
  assert out.shape == img.shape and bool(jnp.isfinite(out).all())
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert float(_jpeg(jax.random.key(0), img, 0.5)[1]["quality"]) == 55.0


def test_psnr_falls_with_intensity_and_is_deterministic():
  img = _photo()
  outs = [_jpeg(jax.random.key(1), img, i)[0] for i in (0.25, 0.5, 1.0)]
  scores = [float(psnr(o, img)) for o in outs]
  assert scores[0] > scores[1] > scores[2], scores
  again, _ = _jpeg(jax.random.key(2), img, 0.5)
  np.testing.assert_array_equal(np.asarray(again), np.asarray(outs[1]))


def test_jit_equals_eager_and_batches():
  img = _photo()
  eager, _ = _jpeg(jax.random.key(0), img, 0.6)
  jitted, _ = jax.jit(_jpeg)(jax.random.key(0), img, 0.6)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-6)
  out, params = degrade.apply(jax.random.key(0), jnp.stack([img, img]), "jpeg", jnp.array([0.0, 0.6]))
  np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(img))
  np.testing.assert_allclose(np.asarray(out[1]), np.asarray(eager), atol=1e-6)
  np.testing.assert_allclose(np.asarray(params["quality"]), [100.0, 46.0])


def test_quality_override_and_errors():
  img = _photo()
  out, params = _jpeg(jax.random.key(0), img, 0.0, quality=90)
  assert float(params["quality"]) == 90.0 and float(psnr(out, img)) < 60.0
  with pytest.raises(ConfigError, match="subsampling"):
    _jpeg(jax.random.key(0), img, 0.5, subsampling="422")
  with pytest.raises(ConfigError, match="unknown parameter"):
    _jpeg(jax.random.key(0), img, 0.5, qualty=50)


def test_straight_through_passes_gradients():
  img = _photo()
  loss = lambda x: jnp.sum(_jpeg(jax.random.key(0), x, 0.5, straight_through=True)[0] * img)
  grad = jax.jit(jax.grad(loss))(img)
  # Identity gradients through every rounding: close to d(sum(out * img))/d(out) = img.
  assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad).mean()) > 0.1
  out_hard, _ = _jpeg(jax.random.key(0), img, 0.5)
  out_soft, _ = _jpeg(jax.random.key(0), img, 0.5, straight_through=True)
  np.testing.assert_allclose(np.asarray(out_soft), np.asarray(out_hard), atol=1e-6)
