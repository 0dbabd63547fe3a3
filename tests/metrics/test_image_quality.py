import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.color
import skimage.data
import skimage.filters
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jaxdeg.errors import UserError
from jaxdeg.metrics import image_quality as iq

GAUSS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
ssim_jit = jax.jit(iq.ssim,
                   static_argnames=("gaussian_weights", "sigma", "win_size", "use_sample_covariance"))
psnr_jit = jax.jit(iq.psnr)
ms_ssim_jit = jax.jit(iq.ms_ssim)


def sk_psnr(a, b):
  return peak_signal_noise_ratio(a, b, data_range=1.0)


def sk_ssim(a, b, **kw):
  return structural_similarity(a, b, channel_axis=-1, data_range=1.0, **kw)


def jpeg(img, quality):
  buf = io.BytesIO()
  Image.fromarray((img * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=quality)
  return np.asarray(Image.open(buf), np.float64) / 255.0


def degraded_copies(img, rng):
  """Noise, blur, JPEG and a brightness shift of one photo: (4, H, W, 3) in [0, 1]."""
  return np.stack([
      np.clip(img + rng.normal(0, 0.08, img.shape), 0, 1),
      skimage.filters.gaussian(img, sigma=2.0, channel_axis=-1),
      jpeg(img, 20),
      np.clip(img * 0.7 + 0.2, 0, 1),
  ])


@pytest.mark.parametrize("shape", [(32, 40, 3), (7, 9, 1), (23, 17, 3)])
def test_random_images_match_skimage(shape):
  rng = np.random.default_rng(sum(shape))
  a = rng.uniform(size=(3, *shape))
  b = np.clip(a + rng.normal(0, 0.1, a.shape) * np.array([0.2, 1.0, 3.0])[:, None, None, None], 0, 1)
  a32, b32 = a.astype(np.float32), b.astype(np.float32)
  np.testing.assert_allclose(psnr_jit(a32, b32), [sk_psnr(p, q) for p, q in zip(a, b)], atol=1e-4)
  np.testing.assert_allclose(ssim_jit(a32, b32), [sk_ssim(p, q) for p, q in zip(a, b)], atol=1e-4)
  if min(shape[:2]) >= 11:
    want = [sk_ssim(p, q, **GAUSS) for p, q in zip(a, b)]
    np.testing.assert_allclose(ssim_jit(a32, b32, **GAUSS), want, atol=1e-4)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_photos_match_skimage(name):
  img = getattr(skimage.data, name)()[:256, :320] / 255.0  # a crop keeps the test quick
  deg = degraded_copies(img, np.random.default_rng(0))
  x, y = np.broadcast_to(img, deg.shape).astype(np.float32), deg.astype(np.float32)
  np.testing.assert_allclose(psnr_jit(x, y), [sk_psnr(img, d) for d in deg], atol=1e-4)
  np.testing.assert_allclose(ssim_jit(x, y), [sk_ssim(img, d) for d in deg], atol=1e-4)
  np.testing.assert_allclose(ssim_jit(x, y, **GAUSS), [sk_ssim(img, d, **GAUSS) for d in deg], atol=1e-4)
  if name == "astronaut":  # Y channel: against skimage's own BT.601 conversion
    y_img = skimage.color.rgb2ycbcr(img)[..., :1] / 255.0
    y_deg = [skimage.color.rgb2ycbcr(d)[..., :1] / 255.0 for d in deg]
    np.testing.assert_allclose(iq.rgb_to_y(img.astype(np.float32)), y_img, atol=1e-5)
    np.testing.assert_allclose(jax.jit(iq.psnr_y)(x, y), [sk_psnr(y_img, d) for d in y_deg], atol=1e-4)
    np.testing.assert_allclose(jax.jit(iq.ssim_y)(x, y), [sk_ssim(y_img, d) for d in y_deg], atol=1e-4)


def test_batched_over_leading_dims_and_identity():
  rng = np.random.default_rng(1)
  a = rng.uniform(size=(2, 3, 16, 16, 3)).astype(np.float32)
  assert ssim_jit(a, a).shape == (2, 3)
  np.testing.assert_allclose(ssim_jit(a, a), 1.0, atol=1e-6)
  assert bool(jnp.all(psnr_jit(a, a) > 100))


@functools.cache
def ms_ssim_fixture():
  img = (skimage.data.chelsea()[:200, :250] / 255.0).astype(np.float32)
  rng = np.random.default_rng(2)
  noisy = np.stack([np.clip(img + rng.normal(0, s, img.shape), 0, 1) for s in (0.0, 0.02, 0.05, 0.1, 0.2)])
  return img, noisy.astype(np.float32)


def test_ms_ssim_identity_and_monotone_in_noise():
  img, noisy = ms_ssim_fixture()
  v = np.asarray(ms_ssim_jit(np.broadcast_to(img, noisy.shape), noisy))
  assert abs(v[0] - 1.0) < 1e-6
  assert np.all(np.diff(v) < 0), v
  with pytest.raises(UserError, match="161x161"):
    iq.ms_ssim(img[:100], img[:100])


def test_ms_ssim_matches_pytorch_msssim():
  import torch
  import pytorch_msssim
  img, noisy = ms_ssim_fixture()
  for crop in [(200, 250), (171, 163)]:  # even and odd sides (pooling pads odd sides)
    x = np.broadcast_to(img, noisy.shape)[:, :crop[0], :crop[1]]
    y = noisy[:, :crop[0], :crop[1]]
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)).astype(np.float64))
    want = pytorch_msssim.ms_ssim(to_t(x), to_t(y), data_range=1.0, size_average=False).numpy()
    np.testing.assert_allclose(ms_ssim_jit(x, y), want, atol=1e-4)


def test_bad_inputs_are_named():
  with pytest.raises(UserError, match="differ in shape"):
    iq.ssim(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
  with pytest.raises(UserError, match="7x7"):
    iq.ssim(np.zeros((5, 8, 3)), np.zeros((5, 8, 3)))
  with pytest.raises(UserError, match="RGB"):
    iq.rgb_to_y(np.zeros((8, 8, 4)))
