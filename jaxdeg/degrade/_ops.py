"""Shared pieces of the degradation families: parameter resolution, filtering, colour transfer.

Everything here works on one image (H, W, C) with static shapes, so the families stay
vmap- and jit-friendly while their strengths are traced values.
"""
import contextlib
import contextvars
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.errors import ConfigError


class Knobs:
  """The physical parameters of one call: the caller's override if given, else the intensity mapping.

  Unknown override names are rejected up front, so a typo never degrades silently with defaults.
  """

  def __init__(self, name, overrides, known):
    unknown = sorted(set(overrides) - set(known))
    if unknown:
      raise ConfigError(f"degradation {name!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(known) or 'none'}")
    self.name = name
    self.overrides = overrides

  def given(self, key):
    return key in self.overrides

  def __call__(self, key, default):
    """A float32 array parameter; `default` may be a value or a thunk (only evaluated if needed)."""
    if key in self.overrides:
      value = self.overrides[key]
      try:
        return jnp.asarray(value, jnp.float32)
      except (TypeError, ValueError):  # a word where a number belongs: name it, not JAX's conversion
        raise ConfigError(f"degradation {self.name!r}: parameter {key}={value!r} must be a number (or an "
                          "array of numbers)") from None
    return jnp.asarray(default() if callable(default) else default, jnp.float32)

  def static(self, key, default):
    """A parameter that shapes the computation (a kernel size, a mode name): must be a Python value."""
    value = self.overrides.get(key, default)
    if isinstance(value, (np.ndarray, np.generic)) and value.ndim == 0:
      value = value.item()
    return value


def as_map(name, key, value, shape):
  """A per-pixel override (H, W) or (H, W, 1), or a scalar, as an (H, W) array; else ConfigError."""
  value = jnp.asarray(value, jnp.float32)
  if value.ndim == 3 and value.shape[-1] == 1:
    value = value[..., 0]
  if value.ndim not in (0, 2) or (value.ndim == 2 and value.shape != tuple(shape)):
    raise ConfigError(f"degradation {name!r}: {key} map has shape {tuple(value.shape)}, "
                      f"expected the image's {tuple(shape)}")
  return jnp.broadcast_to(value, shape)


def is_static_number(value):
  return isinstance(value, numbers.Number) or (isinstance(value, np.ndarray) and value.ndim == 0)


def odd_size(radius):
  return 2 * int(math.ceil(radius)) + 1


def finish(image):
  """Finite and clipped to [0, 1]: the contract every family returns."""
  return jnp.clip(jnp.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Fast random fields. jax.random's threefry costs ~70 ns per value on CPU, more than the rest of a
# noise degradation together; image-sized fields instead hash a counter (two rounds of the
# "lowbias32" integer mixer, seeded from the key) and use XLA's erf_inv for normals. Statistically
# fine for image noise, still a pure function of the key, and about 6× faster.

def _mix32(x):
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


# Which realisation of the random fields a call draws: set only by `registry.apply(...,
# other_fields=k)` around its own call of a family (the families take no such argument).
_FIELD_SALT = contextvars.ContextVar("field_salt", default=0)


def check_other_fields(other_fields):
  """`other_fields` as an int in [0, 2^32); ValueError naming it otherwise."""
  if isinstance(other_fields, bool) or not isinstance(other_fields, (int, np.integer)) \
      or not 0 <= int(other_fields) < 2 ** 32:
    raise ValueError(f"other_fields={other_fields!r}: must be an integer in [0, 2^32) (0: the key's own fields)")
  return int(other_fields)


@contextlib.contextmanager
def drawing_fields(other_fields):
  """While a family is called (and traced) inside this block, its random fields are realisation
  `other_fields` (0: the key's own)."""
  token = _FIELD_SALT.set(check_other_fields(other_fields))
  try:
    yield
  finally:
    _FIELD_SALT.reset(token)


def _field_bits(seed, shape):
  counter = jax.lax.iota(jnp.uint32, int(np.prod(shape))).reshape(shape)
  salt = _FIELD_SALT.get()
  second = seed[1] if not salt else seed[1] ^ _mix32(jnp.uint32(salt))
  return _mix32(_mix32(counter + seed[0]) ^ second)


def _unit(bits):
  """Uniform on (0, 1) from the top 24 bits (never exactly 0 or 1)."""
  return (bits >> 8).astype(jnp.float32) * (1.0 / (1 << 24)) + (0.5 / (1 << 24))


# lax.erf_inv's float32 algorithm (Giles 2012; XLA's coefficients for w < 5 and w >= 5).
_ERFINV_SMALL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                 -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_LARGE = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                 -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def _erf_inv(x):
  """lax.erf_inv, with log(1 - x²) where it has log1p(-x²): XLA:CPU's log1p costs
  ~4× a log and was most of the time of a normal field. The two differ by < 2e-7 in w (where
  1 - x² rounds, w < 0.7 and the polynomial is flat), far below the approximation's own error."""
  w = -jnp.log(1.0 - x * x)
  small = w < 5.0
  w = jnp.where(small, w - 2.5, jnp.sqrt(w) - 3.0)
  p = jnp.where(small, _ERFINV_SMALL[0], _ERFINV_LARGE[0])
  for a, b in zip(_ERFINV_SMALL[1:], _ERFINV_LARGE[1:]):
    p = jnp.where(small, a, b) + p * w
  return jnp.where(jnp.abs(x) == 1.0, x * jnp.inf, p * x)


def _normal(u):
  return math.sqrt(2.0) * _erf_inv(2.0 * u - 1.0)


def random_normal(key, shape):
  """Standard normal field (inverse CDF of a hashed uniform field)."""
  return _normal(_unit(_field_bits(jax.random.bits(key, (2,), jnp.uint32), shape)))


class Stream:
  """All the random numbers of one call, drawn from the key with a single threefry evaluation.

  Every jax.random call compiles its own threefry circuit (0.3–2 s of XLA time each under vmap);
  a family that draws a dozen scalars would spend most of its compile time there. A Stream draws
  `size` random words once and hands them out in order; image-sized fields hash a counter seeded
  from two of them; sub-keys for other families are wrapped from two more.
  """

  def __init__(self, key, size):
    self._key = key
    self._key_shape = jax.random.key_data(key).shape
    self._impl = jax.random.key_impl(key)
    self._size = size
    self._blocks = 0
    self._refill(size)

  def _refill(self, n):
    # Running out only costs another draw (and its compile time): size streams generously.
    key = self._key if self._blocks == 0 else jax.random.fold_in(self._key, self._blocks)
    self._bits = jax.random.bits(key, (max(n, self._size),), jnp.uint32)
    self._blocks += 1
    self._next = 0

  def _take(self, n):
    if self._next + n > self._bits.shape[0]:
      self._refill(n)
    out = self._bits[self._next:self._next + n]
    self._next += n
    return out

  def uniform(self, lo=0.0, hi=1.0, shape=()):
    n = int(np.prod(shape))
    return lo + (hi - lo) * _unit(self._take(n)).reshape(shape)

  def normal(self, shape=()):
    return _normal(self.uniform(shape=shape))

  def bernoulli(self, p=0.5, shape=()):
    return self.uniform(shape=shape) < p

  def randint(self, lo, hi, shape=()):
    """Integers in [lo, hi)."""
    return jnp.minimum(jnp.floor(lo + (hi - lo) * self.uniform(shape=shape)), hi - 1).astype(jnp.int32)

  def categorical(self, probs):
    """Index i with probability probs[i] (probs: a Python sequence summing to 1)."""
    edges = jnp.asarray(np.cumsum(probs)[:-1], jnp.float32)
    return jnp.sum(self.uniform() >= edges).astype(jnp.int32)

  def field_uniform(self, shape, lo=0.0, hi=1.0):
    return lo + (hi - lo) * _unit(_field_bits(self._take(2), shape))

  def field_normal(self, shape):
    return _normal(_unit(_field_bits(self._take(2), shape)))

  def key(self):
    """A fresh key of the caller's key type, e.g. to call another family."""
    n = int(np.prod(self._key_shape))
    return jax.random.wrap_key_data(self._take(n).reshape(self._key_shape), impl=self._impl)


# ---------------------------------------------------------------------------------------------
# Filtering

def fft_size(n):
  """Smallest 2^a·3^b·5^c ≥ n: FFTs of such sizes are several times faster than of odd primes."""
  best = 1 << (n - 1).bit_length()
  p5 = 1
  while p5 < best:
    p35 = p5
    while p35 < best:
      p = p35
      while p < n:
        p *= 2
      best = min(best, p)
      p35 *= 3
    p5 *= 5
  return best


def kernel_spectrum(kernel, shape):
  """rfft2 of a k×k kernel placed at the origin corner of a `shape` grid (`convolve` crops its
  output where the kernel's centre lands, so no roll is needed). Only the kernel's k rows are
  transformed along x, before its zero rows are padded in for the transform along y."""
  rows = jnp.fft.rfft(kernel, n=shape[1], axis=1)
  return jnp.fft.fft(rows.T, n=shape[0]).T


def convolve(image, kernel):
  """True 2-D convolution of every channel with one odd-sized kernel, reflect borders, via FFT.

  FFT keeps the cost independent of the kernel size and of whether the kernel is separable, which
  lets traced kernels (motion trajectories, rotated Gaussians) share one compiled shape. The planes
  are transformed channel-first: XLA:CPU's FFTs over the minor axes of (C, H, W) skip the
  transposes that (H, W, C) needs (motion_blur -21%).
  """
  h, w = image.shape[:2]
  p = kernel.shape[0] // 2
  nh, nw = fft_size(h + 2 * p), fft_size(w + 2 * p)
  padded = jnp.pad(jnp.moveaxis(image, -1, 0), ((0, 0), (p, nh - h - p), (p, nw - w - p)), mode="reflect")
  spec = jnp.fft.rfft2(padded) * kernel_spectrum(kernel, (nh, nw))
  out = jnp.fft.irfft2(spec, s=(nh, nw))[:, 2 * p:2 * p + h, 2 * p:2 * p + w]
  return jnp.moveaxis(out, 0, -1)


def separable(image, taps):
  """Correlate every channel with `taps` along rows and columns (reflect borders)."""
  h, w = image.shape[:2]
  p = taps.shape[0] // 2
  x = jnp.pad(image, ((p, p), (p, p), (0, 0)), mode="reflect")
  x = sum(taps[i] * x[i:i + h] for i in range(taps.shape[0]))
  return sum(taps[i] * x[:, i:i + w] for i in range(taps.shape[0]))


def gaussian_taps(size, sigma):
  r = jnp.arange(size, dtype=jnp.float32) - size // 2
  t = jnp.exp(-0.5 * jnp.square(r / jnp.maximum(sigma, 1e-3)))
  return t / t.sum()


def gaussian_kernel(size, sigma_x, sigma_y, theta):
  """Anisotropic Gaussian: std sigma_x along direction theta (radians), sigma_y across it."""
  r = jnp.arange(size, dtype=jnp.float32) - size // 2
  y, x = jnp.meshgrid(r, r, indexing="ij")
  c, s = jnp.cos(theta), jnp.sin(theta)
  u, v = c * x + s * y, -s * x + c * y
  k = jnp.exp(-0.5 * (jnp.square(u / jnp.maximum(sigma_x, 1e-3)) + jnp.square(v / jnp.maximum(sigma_y, 1e-3))))
  return k / k.sum()


def blur(image, sigma, size):
  """Isotropic Gaussian blur with a traced sigma in a static window."""
  return separable(image, gaussian_taps(size, sigma))


# ---------------------------------------------------------------------------------------------
# Colour

def srgb_to_linear(x):
  x = jnp.clip(x, 0.0, 1.0)
  return jnp.where(x <= 0.04045, x / 12.92, jnp.power((x + 0.055) / 1.055, 2.4))


def linear_to_srgb(x):
  x = jnp.clip(x, 0.0, 1.0)
  return jnp.where(x <= 0.0031308, 12.92 * x, 1.055 * jnp.power(jnp.maximum(x, 0.0031308), 1 / 2.4) - 0.055)


def luma(image):
  return image @ jnp.asarray([0.299, 0.587, 0.114], jnp.float32)
