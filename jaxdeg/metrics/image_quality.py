"""Full-reference image quality metrics on float images in [0, 1] (batched over leading dims).

Images are (..., H, W, C); every metric returns one value per image, shape (...). Pure jnp and
jit-able. `ssim` reproduces `skimage.metrics.structural_similarity(channel_axis=-1)` (the number
the all-in-one restoration papers report); `ms_ssim` reproduces `pytorch_msssim.ms_ssim`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.errors import ConfigError, UserError

# Wang, Simoncelli & Bovik 2003, five scales
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# BT.601 luma with studio swing, as MATLAB rgb2ycbcr (Y in [16, 235] / 255)
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], np.float32) / 255.0
_Y_OFFSET = 16.0 / 255.0


def psnr(x, y, data_range=1.0):
  """Peak signal-to-noise ratio per image over the last three axes (H, W, C), in dB."""
  mse = jnp.mean(jnp.square(jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32)), axis=(-3, -2, -1))
  return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-12))


def rgb_to_y(x):
  """RGB in [0, 1], (..., 3) -> BT.601 luma Y in [16/255, 235/255], (..., 1)."""
  x = jnp.asarray(x, jnp.float32)
  if x.shape[-1] != 3:
    raise UserError(f"rgb_to_y: expected 3 channels (RGB) in the last axis, got shape {x.shape}")
  return (x @ jnp.asarray(_Y_WEIGHTS))[..., None] + _Y_OFFSET


def psnr_y(x, y, data_range=1.0):
  """PSNR on the BT.601 Y channel of RGB images (the super-resolution/deraining convention)."""
  return psnr(rgb_to_y(x), rgb_to_y(y), data_range)


def gaussian_taps(size, sigma):
  """cv2.getGaussianKernel(size, sigma): a normalised 1-D Gaussian centred on the middle tap (float64
  sums, float32 taps)."""
  t = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-0.5 * (t / sigma) ** 2)
  return (g / g.sum()).astype(np.float32)


def _separable_valid(maps, k):
  """Valid 2-D correlation of (N, H, W, C) with the outer product of 1-D kernel `k`.

  A sum of shifted slices: exact float32 on every backend (convolutions may run in bf16/tf32 on
  accelerators) and much faster than a depthwise conv on CPU for these short kernels."""
  n = len(k)
  h, w = maps.shape[1] - n + 1, maps.shape[2] - n + 1
  maps = sum(float(k[i]) * maps[:, i:i + h] for i in range(n))
  return sum(float(k[i]) * maps[:, :, i:i + w] for i in range(n))


def _flatten(x, y, name, min_size):
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  if x.shape != y.shape:
    raise UserError(f"{name}: images differ in shape, {x.shape} vs {y.shape}")
  if x.ndim < 3:
    raise UserError(f"{name}: expected (..., H, W, C) images, got shape {x.shape}")
  if min(x.shape[-3:-1]) < min_size:
    raise UserError(f"{name}: images of {x.shape[-3]}x{x.shape[-2]} are smaller than the "
                     f"{min_size}x{min_size} this metric needs")
  lead = x.shape[:-3]
  return x.reshape((-1,) + x.shape[-3:]), y.reshape((-1,) + y.shape[-3:]), lead


def _ssim_maps(x, y, kernel, data_range, k1, k2, cov_norm):
  """Per-pixel luminance term and contrast-structure term over the valid region, (N, h, w, C)."""
  stats = _separable_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1), kernel)
  ux, uy, uxx, uyy, uxy = jnp.split(stats, 5, axis=-1)
  vx = cov_norm * (uxx - ux * ux)
  vy = cov_norm * (uyy - uy * uy)
  vxy = cov_norm * (uxy - ux * uy)
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  lum = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1)
  cs = (2 * vxy + c2) / (vx + vy + c2)
  return lum, cs


def ssim(x, y, data_range=1.0, *, gaussian_weights=False, sigma=1.5, win_size=None,
         use_sample_covariance=True, k1=0.01, k2=0.03):
  """SSIM per image, equal to skimage's `structural_similarity(x, y, channel_axis=-1, ...)` with
  the same arguments: 7×7 uniform window and sample covariance by default;
  `gaussian_weights=True, use_sample_covariance=False` gives Wang et al.'s 11×11 σ = 1.5 variant
  (see `ssim_gaussian`). Like skimage, the border of (win_size − 1) / 2 pixels is left out and
  channels are averaged."""
  if gaussian_weights:
    radius = int(3.5 * sigma + 0.5)  # skimage's truncate = 3.5, ndimage's radius rule
    kernel = gaussian_taps(2 * radius + 1, sigma)
    win_size = 2 * radius + 1 if win_size is None else win_size
  else:
    win_size = 7 if win_size is None else win_size
    radius = win_size // 2
    kernel = np.full(win_size, 1.0 / win_size, np.float32)
  if win_size % 2 != 1:
    raise ConfigError(f"ssim: win_size {win_size} must be odd")
  x, y, lead = _flatten(x, y, "ssim", win_size)
  cov_norm = win_size ** 2 / (win_size ** 2 - 1) if use_sample_covariance else 1.0
  # filter responses are needed only where skimage keeps them: pad symmetrically (ndimage's
  # 'reflect') just enough for the filter radius to reach past the crop
  crop = (win_size - 1) // 2
  extra = max(radius - crop, 0)
  if extra:
    x, y = (jnp.pad(a, ((0, 0), (extra, extra), (extra, extra), (0, 0)), mode="symmetric") for a in (x, y))
  trim = max(crop - radius, 0)
  if trim:
    x, y = (a[:, trim:-trim, trim:-trim] for a in (x, y))
  lum, cs = _ssim_maps(x, y, kernel, data_range, k1, k2, cov_norm)
  return jnp.mean(lum * cs, axis=(1, 2, 3)).reshape(lead)


def ssim_gaussian(x, y, data_range=1.0):
  """Wang et al. 2004 SSIM: 11×11 Gaussian window, σ = 1.5, population covariance
  (= skimage with gaussian_weights=True, sigma=1.5, use_sample_covariance=False)."""
  return ssim(x, y, data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def ssim_y(x, y, data_range=1.0, **kw):
  """`ssim` on the BT.601 Y channel of RGB images."""
  return ssim(rgb_to_y(x), rgb_to_y(y), data_range, **kw)


def _avg_pool2(x):
  """2×2 average pooling as torch avg_pool2d(2, padding=size % 2): odd sides are zero-padded on
  both ends, the zeros counted in the mean (pytorch_msssim's convention)."""
  ph, pw = x.shape[1] % 2, x.shape[2] % 2
  x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  x = x[:, :h, :w]
  return x.reshape(x.shape[0], h // 2, 2, w // 2, 2, x.shape[-1]).mean(axis=(2, 4))


def ms_ssim(x, y, data_range=1.0, *, weights=MS_SSIM_WEIGHTS, win_size=11, sigma=1.5, k1=0.01, k2=0.03):
  """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) per image, as `pytorch_msssim.ms_ssim`:
  Gaussian window without padding, contrast-structure at the first scales and full SSIM at the
  last (each clipped at 0, averaged per channel), 2×2 average pooling between scales, weighted
  geometric mean over scales, then the mean over channels. The shorter side must exceed
  (win_size − 1)·2^(scales − 1) (160 px for the defaults)."""
  n = len(weights)
  need = (win_size - 1) * 2 ** (n - 1) + 1
  x, y, lead = _flatten(x, y, "ms_ssim", need)
  kernel = gaussian_taps(2 * (win_size // 2) + 1, sigma)
  terms = []
  for i in range(n):
    lum, cs = _ssim_maps(x, y, kernel, data_range, k1, k2, 1.0)
    if i < n - 1:
      terms.append(jax.nn.relu(jnp.mean(cs, axis=(1, 2))))
      x, y = _avg_pool2(x), _avg_pool2(y)
    else:
      terms.append(jax.nn.relu(jnp.mean(lum * cs, axis=(1, 2))))
  per_channel = jnp.prod(jnp.stack(terms) ** jnp.asarray(weights, jnp.float32)[:, None, None], axis=0)
  return jnp.mean(per_channel, axis=-1).reshape(lead)


__all__ = ["psnr", "psnr_y", "rgb_to_y", "ssim", "ssim_gaussian", "ssim_y", "ms_ssim", "MS_SSIM_WEIGHTS"]
