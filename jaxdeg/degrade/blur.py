"""Optical blurs: Gaussian (isotropic or anisotropic), defocus (disk) and the sinc ringing filter.

Kernel windows are static (a fixed maximum size, or one derived from a Python-number override);
weights come from the traced parameters, so one compiled shape serves every strength.
"""
import math

import jax.numpy as jnp

from jaxdeg.degrade._ops import Knobs, blur, convolve, finish, gaussian_kernel, is_static_number, odd_size
from jaxdeg.degrade.registry import register

MAX_GAUSSIAN_SIGMA = 3.0   # Real-ESRGAN's blur_sigma upper bound
MAX_DEFOCUS_RADIUS = 8.0   # px: a strongly out-of-focus 256² crop
MIN_SINC_CUTOFF = math.pi / 5  # Real-ESRGAN's lowest omega_c for large kernels


def _window(kn, names, scale, default):
  """Static odd window: the `size` override, else 3 scales of the largest static override, else default."""
  size = kn.static("size", None)
  if size is not None:
    return int(size) | 1
  values = [kn.overrides[n] for n in names if n in kn.overrides]
  if values and all(is_static_number(v) for v in values):
    return max(3, odd_size(scale * max(float(v) for v in values)))
  return default


@register("gaussian_blur")
def gaussian_blur(key, image, intensity, **overrides):
  """Gaussian blur, sigma = 3·intensity px; `sigma_x`, `sigma_y`, `theta` (radians) make it anisotropic.

  The isotropic case runs separably; the anisotropic one builds the rotated 2-D kernel and uses FFT.
  """
  del key  # deterministic
  kn = Knobs("gaussian_blur", overrides, ("sigma", "sigma_x", "sigma_y", "theta", "size"))
  sigma = kn("sigma", lambda: MAX_GAUSSIAN_SIGMA * intensity)
  size = _window(kn, ("sigma", "sigma_x", "sigma_y"), 3.0, odd_size(3 * MAX_GAUSSIAN_SIGMA) + 2)
  if not any(kn.given(n) for n in ("sigma_x", "sigma_y", "theta")):
    return finish(blur(image, sigma, size)), {"sigma_x": sigma, "sigma_y": sigma, "theta": jnp.zeros(())}
  sigma_x = kn("sigma_x", sigma)
  sigma_y = kn("sigma_y", sigma)
  theta = kn("theta", 0.0)
  out = convolve(image, gaussian_kernel(size, sigma_x, sigma_y, theta))
  return finish(out), {"sigma_x": sigma_x, "sigma_y": sigma_y, "theta": theta}


def disk_kernel(size, radius):
  """Anti-aliased uniform disk (the defocus point-spread function); radius 0 is the identity."""
  r = jnp.arange(size, dtype=jnp.float32) - size // 2
  d = jnp.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
  k = jnp.clip(radius + 0.5 - d, 0.0, 1.0)
  return k / k.sum()


@register("defocus_blur")
def defocus_blur(key, image, intensity, **overrides):
  """Out-of-focus blur with a disk PSF of radius 8·intensity px."""
  del key
  kn = Knobs("defocus_blur", overrides, ("radius", "size"))
  radius = kn("radius", lambda: MAX_DEFOCUS_RADIUS * intensity)
  size = _window(kn, ("radius",), 1.0, odd_size(MAX_DEFOCUS_RADIUS) + 2)
  return finish(convolve(image, disk_kernel(size, radius))), {"radius": radius}


def bessel_j1(x):
  """J1 (Numerical Recipes rational/asymptotic fit, |error| < 2e-6): jax has no stable J1."""
  ax = jnp.abs(x)
  y = x * x
  num = x * (72362614232.0 + y * (-7895059235.0 + y * (242396853.1 + y * (
      -2972611.439 + y * (15704.48260 + y * (-30.16036606))))))
  den = 144725228442.0 + y * (2300535178.0 + y * (18583304.74 + y * (
      99447.43394 + y * (376.9991397 + y))))
  big = jnp.maximum(ax, 8.0)
  z = 8.0 / big
  z2 = z * z
  phase = ax - 2.356194491
  p = 1.0 + z2 * (0.183105e-2 + z2 * (-0.3516396496e-4 + z2 * (0.2457520174e-5 + z2 * (-0.240337019e-6))))
  q = 0.04687499995 + z2 * (-0.2002690873e-3 + z2 * (0.8449199096e-5 + z2 * (
      -0.88228987e-6 + z2 * 0.105787412e-6)))
  asym = jnp.sqrt(0.636619772 / big) * (jnp.cos(phase) * p - z * jnp.sin(phase) * q) * jnp.sign(x)
  return jnp.where(ax < 8.0, num / den, asym)


def sinc_kernel(size, cutoff):
  """Real-ESRGAN's `circular_lowpass_kernel`: the ideal circular low-pass truncated to size²."""
  r = jnp.arange(size, dtype=jnp.float32) - size // 2
  d = jnp.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
  safe = jnp.where(d > 0, d, 1.0)
  k = jnp.where(d > 0, cutoff * bessel_j1(cutoff * safe) / (2 * math.pi * safe), cutoff ** 2 / (4 * math.pi))
  return k / k.sum()


def sinc_filter(image, cutoff, size):
  # At cutoff π the truncated kernel is nearly, not exactly, the identity: skip it there.
  return jnp.where(cutoff >= math.pi - 1e-4, image, convolve(image, sinc_kernel(size, cutoff)))


@register("sinc")
def sinc(key, image, intensity, **overrides):
  """Ringing/overshoot from a sharp low-pass: cutoff omega_c = π − intensity·(π − π/5), 21² window."""
  del key
  kn = Knobs("sinc", overrides, ("cutoff", "size"))
  cutoff = kn("cutoff", lambda: math.pi - intensity * (math.pi - MIN_SINC_CUTOFF))
  size = int(kn.static("size", 21)) | 1
  return finish(sinc_filter(image, cutoff, size)), {"cutoff": cutoff}
