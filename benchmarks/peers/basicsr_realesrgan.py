"""Real-ESRGAN's second-order degradation in numpy/OpenCV, one image at a time, following BasicSR
(`basicsr/data/degradations.py`, `RealESRGANDataset` kernels, `RealESRGANModel.feed_data` order and
default ranges). The speed peer of jaxdeg's `realesrgan` pipeline in benchmarks/bench_degrade.py.

Same-size variant (scale 1), like jaxdeg's: the image really shrinks and grows with each resize
(cheaper at low resolution) and is resized back to its input size at the end.
"""
import math

import cv2
import numpy as np
from scipy import special

KERNEL_RANGE = list(range(7, 22, 2))
KERNEL_LIST = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_PROB = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
MODES = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def _grid(size):
  ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
  xx, yy = np.meshgrid(ax, ax)
  return np.stack([xx, yy], -1)


def _inverse_sigma(sig_x, sig_y, theta):
  d = np.diag([sig_x ** 2, sig_y ** 2])
  u = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  return np.linalg.inv(u @ d @ u.T)


def _beta(rng, lo, hi):
  return rng.uniform(lo, 1) if rng.uniform() < 0.5 else rng.uniform(1, hi)


def mixed_kernel(rng, size, sigma_range, betag_range=(0.5, 4), betap_range=(1, 2)):
  """BasicSR `random_mixed_kernels` (no multiplicative kernel noise, as Real-ESRGAN configures it)."""
  kind = KERNEL_LIST[rng.choice(len(KERNEL_LIST), p=KERNEL_PROB)]
  sx = rng.uniform(*sigma_range)
  iso = kind.endswith("iso") and not kind.endswith("aniso")
  sy = sx if iso else rng.uniform(*sigma_range)
  theta = 0.0 if iso else rng.uniform(-math.pi, math.pi)
  grid = _grid(size)
  q = np.sum((grid @ _inverse_sigma(sx, sy, theta)) * grid, 2)
  if kind.startswith("generalized"):
    k = np.exp(-0.5 * np.power(q, _beta(rng, *betag_range)))
  elif kind.startswith("plateau"):
    k = 1.0 / (np.power(q, _beta(rng, *betap_range)) + 1)
  else:
    k = np.exp(-0.5 * q)
  return k / k.sum()


def circular_lowpass_kernel(cutoff, size, pad_to=21):
  """BasicSR `circular_lowpass_kernel` (2-D sinc), padded to pad_to."""
  c = (size - 1) / 2
  y, x = np.mgrid[:size, :size]
  r = np.sqrt((x - c) ** 2 + (y - c) ** 2)
  with np.errstate(divide="ignore", invalid="ignore"):
    k = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
  k[(size - 1) // 2, (size - 1) // 2] = cutoff ** 2 / (4 * np.pi)
  k = k / np.sum(k)
  pad = (pad_to - size) // 2
  return np.pad(k, ((pad, pad), (pad, pad)))


def dataset_kernel(rng, sigma_range, sinc_prob=0.1):
  size = int(rng.choice(KERNEL_RANGE))
  if rng.uniform() < sinc_prob:
    omega = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
    return circular_lowpass_kernel(omega, size)
  k = mixed_kernel(rng, size, sigma_range)
  pad = (21 - size) // 2
  return np.pad(k, ((pad, pad), (pad, pad)))


def gaussian_noise(rng, img, sigma_range, gray_prob=0.4):
  sigma = rng.uniform(*sigma_range) / 255.0
  if rng.uniform() < gray_prob:
    noise = np.float32(rng.standard_normal(img.shape[:2]) * sigma)[..., None]
  else:
    noise = np.float32(rng.standard_normal(img.shape) * sigma)
  return np.clip(img + noise, 0, 1)


def poisson_noise(rng, img, scale_range, gray_prob=0.4):
  scale = rng.uniform(*scale_range)
  gray = rng.uniform() < gray_prob
  src = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if gray else img
  src = np.clip((src * 255.0).round(), 0, 255) / 255.0
  vals = 2 ** np.ceil(np.log2(len(np.unique(src))))
  noise = np.float32(rng.poisson(src * vals) / float(vals)) - src
  if gray:
    noise = noise[..., None]
  return np.clip(img + noise * scale, 0, 1)


def jpeg(rng, img, quality_range=(30, 95)):
  q = int(rng.uniform(*quality_range))
  bgr = cv2.cvtColor(np.uint8(np.clip(img * 255.0, 0, 255).round()), cv2.COLOR_RGB2BGR)
  _, enc = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), q])
  return cv2.cvtColor(cv2.imdecode(enc, 1), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _resize(img, h, w, rng):
  return cv2.resize(img, (max(1, w), max(1, h)), interpolation=MODES[rng.integers(3)])


def _scale(rng, probs, lo, hi):
  kind = rng.choice(3, p=probs)
  return rng.uniform(1, hi) if kind == 0 else rng.uniform(lo, 1) if kind == 1 else 1.0


def degrade(rng, img):
  """float32 RGB (H, W, 3) in [0, 1] -> degraded image of the same size."""
  h, w = img.shape[:2]
  # Kernels are drawn in the dataset, as BasicSR does.
  k1 = dataset_kernel(rng, (0.2, 3.0))
  k2 = dataset_kernel(rng, (0.2, 1.5))
  sinc = (circular_lowpass_kernel(rng.uniform(np.pi / 3, np.pi), int(rng.choice(KERNEL_RANGE)))
          if rng.uniform() < 0.8 else None)
  # Round 1.
  out = cv2.filter2D(img, -1, k1)
  s = _scale(rng, (0.2, 0.7, 0.1), 0.15, 1.5)
  out = _resize(out, int(h * s), int(w * s), rng)
  out = gaussian_noise(rng, out, (1, 30)) if rng.uniform() < 0.5 else poisson_noise(rng, out, (0.05, 3))
  out = jpeg(rng, out)
  # Round 2.
  if rng.uniform() < 0.8:
    out = cv2.filter2D(out, -1, k2)
  s = _scale(rng, (0.3, 0.4, 0.3), 0.3, 1.2)
  out = _resize(out, int(h * s), int(w * s), rng)
  out = gaussian_noise(rng, out, (1, 25)) if rng.uniform() < 0.5 else poisson_noise(rng, out, (0.05, 2.5))
  # Final: [resize back + sinc] and JPEG in random order.
  if rng.uniform() < 0.5:
    out = _resize(out, h, w, rng)
    out = cv2.filter2D(out, -1, sinc) if sinc is not None else out
    out = jpeg(rng, out)
  else:
    out = jpeg(rng, out)
    out = _resize(out, h, w, rng)
    out = cv2.filter2D(out, -1, sinc) if sinc is not None else out
  return np.clip((out * 255.0).round(), 0, 255) / 255.0
