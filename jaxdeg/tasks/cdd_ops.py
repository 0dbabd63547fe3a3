"""Image helpers of the universal degradation model's task: value ranges, fixed Gaussian blurs,
the residual-paste baseline, MS-SSIM at small sizes, and cheap random keys.

Images are NHWC; the model works in [-1, 1], data and metrics in [0, 1].
"""
import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.metrics.image_quality import MS_SSIM_WEIGHTS, gaussian_taps, ms_ssim


def blur_matrix(size, taps):
  """(size, size) matrix of a 1-D convolution with `taps` and reflect borders (numpy's 'reflect',
  repeated for kernels wider than the image): out = M @ signal."""
  p = len(taps) // 2
  padded = np.pad(np.eye(size, dtype=np.float64), ((p, p), (0, 0)), mode="reflect")
  windows = np.stack([padded[k:k + size] for k in range(len(taps))])  # (taps, out, in)
  return np.einsum("k,koi->oi", np.asarray(taps, np.float64), windows).astype(np.float32)


def blur(images, taps):
  """Separable blur of [B, H, W, C] with 1-D `taps`, reflect borders, same size out. Two small
  matrix products: XLA:CPU runs wide depthwise convolutions (45 taps) very slowly."""
  h, w = images.shape[1:3]
  rows = jnp.asarray(blur_matrix(h, taps), images.dtype)
  cols = rows if w == h else jnp.asarray(blur_matrix(w, taps), images.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", rows, images, cols)


def gaussian_blur(images, sigma, truncate=3.0):
  """Isotropic Gaussian blur with a kernel of ±truncate·sigma (at least 3 taps)."""
  radius = max(1, int(np.ceil(truncate * sigma)))
  return blur(images, gaussian_taps(2 * radius + 1, sigma))


def residual_paste(clean, reference, sigma):
  """Baseline degradation transfer: the clean target plus the reference's high frequencies
  (reference − GaussianBlur_σ(reference)), clipped to [0, 1]. Carries noise and grain across;
  knows nothing about blur, colour or compression."""
  detail = reference - gaussian_blur(reference, sigma)
  return jnp.clip(clean + detail, 0.0, 1.0)


def ms_ssim_scales(size, win_size=11):
  """How many of MS-SSIM's five scales fit a `size`-pixel side (each halves; the last needs a
  full window): 5 from 161 px, 4 from 81, 3 from 41, 2 from 21."""
  n = len(MS_SSIM_WEIGHTS)
  while n > 1 and (win_size - 1) * 2 ** (n - 1) + 1 > size:
    n -= 1
  return n


def ms_ssim_fitting(x, y):
  """MS-SSIM (pytorch_msssim conventions) on the first scales that fit the image, their weights
  renormalised to sum to 1; identical to `ms_ssim` from 161 px up."""
  n = ms_ssim_scales(min(x.shape[-3:-1]))
  weights = np.asarray(MS_SSIM_WEIGHTS[:n], np.float64)
  return ms_ssim(x, y, weights=tuple(float(w) for w in weights / weights.sum()))


def rbg_key(key):
  """A key of JAX's 'rbg' generator drawn from any key. The generator's noise (one normal map per
  IDA-SFT layer) and parameter init use it: XLA:CPU compiles one threefry kernel per drawn shape,
  which dominates compile time, while 'rbg' values are still identical on every mesh."""
  return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


__all__ = ["blur_matrix", "blur", "gaussian_blur",
           "residual_paste", "ms_ssim_scales", "ms_ssim_fitting", "rbg_key"]
