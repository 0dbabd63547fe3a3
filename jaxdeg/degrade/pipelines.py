"""Composite degradation recipes, registered like single degradations (so `apply`, specs and the CLI
take them by name): Real-ESRGAN's second-order pipeline, BSRGAN's shuffled pipeline, the
universal model's "WQI" training recipe, and random mixtures of the GenDeg weather types.

Pairs keep the input size: where a recipe changes resolution it is a round trip through a virtual
grid (see resize.py), and noise drawn "at" a lower resolution is drawn at that virtual resolution.
JPEG stages run at full resolution (so block artefacts are 8 px, not 8 virtual px). `intensity`
scales every stage towards the identity: 1 is the published recipe, 0 returns the input.
JPEG is looked up by name at call time; `jpeg=False` in the spec removes those stages.
"""
import math

import jax
import jax.numpy as jnp

from jaxdeg.degrade import registry
from jaxdeg.degrade._ops import Knobs, Stream, convolve, finish, gaussian_kernel, odd_size
from jaxdeg.degrade.blur import disk_kernel, sinc_kernel
from jaxdeg.degrade.low_light import sensor_noise
from jaxdeg.degrade.motion_blur import MAX_LENGTH_FRACTION as MOTION_FRACTION
from jaxdeg.degrade.noise import pink_field
from jaxdeg.degrade.registry import apply_spec, register

from jaxdeg.degrade.resize import MODES, apply_matrices, round_trip, round_trip_matrix
from jaxdeg.errors import ConfigError

KERNEL = 21  # Real-ESRGAN pads every blur/sinc kernel to 21×21
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


def _lerp_to_identity(t, value, identity):
  return identity + t * (value - identity)


def _window(size):
  """Mask of a centred size×size window inside the KERNEL² grid (size may be traced)."""
  r = jnp.abs(jnp.arange(KERNEL) - KERNEL // 2)
  inside = r <= size // 2
  return (inside[:, None] & inside[None, :]).astype(jnp.float32)


def _quad_form(sigma_x, sigma_y, theta):
  r = jnp.arange(KERNEL, dtype=jnp.float32) - KERNEL // 2
  y, x = jnp.meshgrid(r, r, indexing="ij")
  c, s = jnp.cos(theta), jnp.sin(theta)
  u, v = c * x + s * y, -s * x + c * y
  return jnp.square(u / jnp.maximum(sigma_x, 1e-3)) + jnp.square(v / jnp.maximum(sigma_y, 1e-3))


def _beta(rs, lo, hi):
  """BasicSR's shape-parameter draw: half the time below 1, half above."""
  below, a, b = rs.bernoulli(), rs.uniform(lo, 1.0), rs.uniform(1.0, hi)
  return jnp.where(below, a, b)


KERNEL_WORDS = 13


def realesrgan_kernel(rs, t, sigma_max, sinc_prob, betag=(0.5, 4.0), betap=(1.0, 2.0)):
  """BasicSR `random_mixed_kernels` (+ the sinc branch), widths scaled by t, in a 21² grid."""
  size = 2 * rs.randint(3, 11) + 1  # 7, 9, ..., 21
  kind = rs.categorical(KERNEL_PROBS)
  sx = rs.uniform(0.2, sigma_max) * t
  sy = jnp.where(kind % 2 == 1, rs.uniform(0.2, sigma_max) * t, sx)
  theta = jnp.where(kind % 2 == 1, rs.uniform(-math.pi, math.pi), 0.0)
  beta_g, beta_p = _beta(rs, *betag), _beta(rs, *betap)
  q = _quad_form(sx, sy, theta)
  family = kind // 2
  k = jnp.where(family == 0, jnp.exp(-0.5 * q),
                jnp.where(family == 1, jnp.exp(-0.5 * jnp.power(q, beta_g)), 1.0 / (jnp.power(q, beta_p) + 1.0)))
  omega = jnp.where(size < 13, rs.uniform(math.pi / 3, math.pi), rs.uniform(math.pi / 5, math.pi))
  sinc = sinc_kernel(KERNEL, _lerp_to_identity(t, omega, math.pi))
  k = jnp.where(rs.bernoulli(sinc_prob), sinc, k) * _window(size)
  return k / k.sum()


def _delta():
  return jnp.zeros((KERNEL, KERNEL)).at[KERNEL // 2, KERNEL // 2].set(1.0)


def _random_scale(rs, probs, lo, hi):
  """Real-ESRGAN's up/down/keep draw of a resize factor."""
  kind, up, down = rs.categorical(probs), rs.uniform(1.0, hi), rs.uniform(lo, 1.0)
  return jnp.where(kind == 0, up, jnp.where(kind == 1, down, 1.0))


def _random_mode(rs):
  return jax.nn.one_hot(rs.randint(0, len(MODES)), len(MODES))


def _resize_and_noise(rs, image, res, t, sigma_range, poisson_range):
  """Real-ESRGAN's resize (random mode) then Gaussian (p 0.5, sigma/255) or Poisson noise (gray with
  p 0.4) drawn at the virtual resolution `res`: white noise takes the same round trip as the image
  (one matmul for both) and is renormalised to unit variance."""
  h, w = image.shape[:2]
  mode = _random_mode(rs)
  rows = round_trip_matrix(h, res, mode, 0.15, 1.5)
  cols = rows if h == w else round_trip_matrix(w, res, mode, 0.15, 1.5)
  both = apply_matrices(jnp.concatenate([image, rs.field_normal(image.shape)], -1), rows, cols)
  image, field = both[..., :3], both[..., 3:]
  field = field / jnp.maximum(field.std(axis=(0, 1), keepdims=True), 1e-6)
  gray, gaussian = rs.bernoulli(0.4), rs.bernoulli(0.5)
  sigma = rs.uniform(*sigma_range) / 255.0
  scale = rs.uniform(*poisson_range)
  field = jnp.where(gray, field[..., :1], field)
  level = jnp.where(gray, image.mean(-1, keepdims=True), image)
  poisson = jnp.sqrt(jnp.clip(level, 0.0, 1.0) / 256.0) * scale
  return jnp.clip(image + jnp.where(gaussian, sigma, poisson) * t * field, 0.0, 1.0)


def _jpeg(rs, image, t, lo, hi, enabled):
  quality = _lerp_to_identity(t, rs.uniform(lo, hi), 100.0)
  key = rs.key()
  if not enabled:
    return image
  out = registry.get("jpeg")(key, image, t, quality=jnp.round(quality))[0]
  return jnp.where(t > 0, out, image)


@register("realesrgan")
def realesrgan(key, image, intensity, **overrides):
  """Real-ESRGAN's second-order degradation (Wang et al. 2021; BasicSR defaults), same-size output.

  Round 1: blur (sigma 0.2–3; iso/aniso/generalised/plateau/sinc kernels) → resize (up 0.2 / down 0.7
  / keep 0.1 over [0.15, 1.5], random mode) → Gaussian σ 1–30 or Poisson scale 0.05–3 (gray p 0.4) →
  JPEG 30–95. Round 2: blur p 0.8 (sigma 0.2–1.5) → resize (0.3/0.4/0.3 over [0.3, 1.2]) → noise
  σ 1–25 / Poisson 0.05–2.5 → then, in random order, [back to full size + sinc (p 0.8)] and JPEG
  30–95. Blur widths are in full-resolution pixels. The training-time unsharp masking of the target
  is not part of the degradation.
  """
  kn = Knobs("realesrgan", overrides, ("jpeg",))
  use_jpeg = bool(kn.static("jpeg", True))
  t = jnp.clip(jnp.asarray(intensity, jnp.float32), 0.0, 1.0)
  rs = Stream(key, 2 * KERNEL_WORDS + 2 * 4 + 2 * 2 + 2 * 9 + 3 * 3 + 6)
  # Round 1.
  x = convolve(image, realesrgan_kernel(rs, t, 3.0, 0.1))
  res1 = _lerp_to_identity(t, _random_scale(rs, (0.2, 0.7, 0.1), 0.15, 1.5), 1.0)
  x = _resize_and_noise(rs, x, res1, t, (1.0, 30.0), (0.05, 3.0))
  x = _jpeg(rs, x, t, 30.0, 95.0, use_jpeg)
  # Round 2.
  blurred = convolve(x, realesrgan_kernel(rs, t, 1.5, 0.1))
  x = jnp.where(rs.bernoulli(0.8), blurred, x)
  res2 = _lerp_to_identity(t, _random_scale(rs, (0.3, 0.4, 0.3), 0.3, 1.2), 1.0)
  x = _resize_and_noise(rs, x, res2, t, (1.0, 25.0), (0.05, 2.5))
  # Final: [resize back (a no-op at the same size) + sinc] and JPEG, in random order.
  omega = _lerp_to_identity(t, rs.uniform(math.pi / 3, math.pi), math.pi)
  size = 2 * rs.randint(3, 11) + 1
  sinc = sinc_kernel(KERNEL, omega) * _window(size)
  sinc = jnp.where(rs.bernoulli(0.8) & (t > 0), sinc / sinc.sum(), _delta())
  sinc_first = rs.bernoulli(0.5)
  # Either order with one JPEG: sinc before it, or after it.
  x = jnp.where(sinc_first, convolve(x, sinc), x)
  x = _jpeg(rs, x, t, 30.0, 95.0, use_jpeg)
  x = jnp.where(sinc_first, x, convolve(x, sinc))
  x = jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0) / 255.0
  return finish(jnp.where(t > 0, x, image)), {"scale1": res1, "scale2": res2, "sinc_first": sinc_first}


def _windowed_gaussian(size, grid, sigma_x, sigma_y, theta):
  k = gaussian_kernel(grid, sigma_x, sigma_y, theta)
  r = jnp.abs(jnp.arange(grid) - grid // 2)
  inside = (r <= size // 2)
  k = k * (inside[:, None] & inside[None, :])
  return k / k.sum()


def _bsrgan_noise_field(rs, shape):
  """KAIR's three noise flavours: colour (p 0.4), gray (p 0.4), channel-correlated colour (p 0.2)."""
  z = rs.field_normal(shape)
  u = rs.uniform()
  d = rs.uniform(shape=(3,))
  basis, _ = jnp.linalg.qr(rs.uniform(shape=(3, 3)))
  # A random covariance Uᵀ D U; its symmetric square root correlates the channels.
  mix = basis.T @ jnp.diag(jnp.sqrt(d)) @ basis
  return jnp.where(u < 0.4, jnp.broadcast_to(z[..., :1], shape), jnp.where(u < 0.8, z, z @ mix))


BSRGAN_OP_WORDS = 24


def _bsrgan_ops(t, use_jpeg):
  """The eight shuffled operations; each takes (random words, image) and draws from its own words."""
  def blur(rs, x):
    # KAIR `add_blur` for sf = 4: anisotropic (variances ≤ 8) or isotropic (sigma ≤ 2.8), 7–25 px.
    size = 2 * rs.randint(2, 12) + 3
    aniso = rs.bernoulli()
    l1, l2, iso, theta = rs.uniform(0.0, 8.0), rs.uniform(0.0, 8.0), rs.uniform(0.0, 2.8), rs.uniform(0.0, math.pi)
    sx = jnp.where(aniso, jnp.sqrt(l1), iso) * t
    sy = jnp.where(aniso, jnp.sqrt(l2), iso) * t
    return convolve(x, _windowed_gaussian(size, 25, sx, sy, theta))

  def resize(rs, x):
    scale = _lerp_to_identity(t, 1.0 / rs.uniform(1.0, 8.0), 1.0)
    return round_trip(x, scale, _random_mode(rs), 0.125, 1.0)

  def gaussian(rs, x):
    level = rs.randint(2, 26) / 255.0 * t
    return x + level * _bsrgan_noise_field(rs, x.shape)

  def poisson(rs, x):
    vals = jnp.power(10.0, rs.uniform(2.0, 4.0))
    gray = rs.bernoulli()
    level = jnp.where(gray, x.mean(-1, keepdims=True), x)
    z = rs.field_normal(x.shape)
    z = jnp.where(gray, z[..., :1], z)
    return x + t * jnp.sqrt(jnp.clip(level, 0.0, 1.0) / vals) * z

  def speckle(rs, x):
    level = rs.randint(2, 26) / 255.0 * t
    return x + x * level * _bsrgan_noise_field(rs, x.shape)

  def jpeg(rs, x):
    return jnp.where(rs.bernoulli(0.9), _jpeg(rs, x, t, 30.0, 95.0, use_jpeg), x)

  def camera(rs, x):
    # Sensor noise in linear light (Brooks et al. 2019 ranges), applied with KAIR's isp_prob 0.25.
    shot = jnp.exp(rs.uniform(math.log(1e-4), math.log(1.2e-2)))
    read = jnp.exp(2.18 * jnp.log(shot) + 1.2 + 0.26 * rs.normal())
    lin = jnp.power(jnp.clip(x, 0.0, 1.0), 2.2)
    noisy = sensor_noise(rs.field_normal(x.shape), lin, shot * t, read * t)
    noisy = jnp.power(jnp.clip(noisy, 0.0, 1.0), 1 / 2.2)
    return jnp.where(rs.bernoulli(0.25), noisy, x)

  def op(f):
    return lambda key, x: jnp.clip(f(Stream(key, BSRGAN_OP_WORDS), x), 0.0, 1.0)

  return [op(f) for f in (blur, blur, resize, gaussian, poisson, speckle, jpeg, camera)]


@register("bsrgan")
def bsrgan(key, image, intensity, **overrides):
  """BSRGAN's degradation (Zhang et al. 2021, KAIR `degradation_bsrgan_plus`, sf = 4), same-size.

  Blur ×2, resize (round trip at 1/U(1, 8), random mode), Gaussian noise 2–25 (colour / gray /
  correlated), Poisson (10^U(2,4) levels), speckle 2–25, JPEG 30–95 (p 0.9) and camera sensor noise
  (p 0.25) in a random order, then a final JPEG 30–95. Under vmap every step evaluates all eight
  operations (lax.switch becomes select), so this recipe costs ~8× its sequential work per image.
  """
  kn = Knobs("bsrgan", overrides, ("jpeg",))
  use_jpeg = bool(kn.static("jpeg", True))
  t = jnp.clip(jnp.asarray(intensity, jnp.float32), 0.0, 1.0)
  ops = _bsrgan_ops(t, use_jpeg)
  rs = Stream(key, len(ops) + 2 * len(ops) + 4)
  order = jnp.argsort(rs.uniform(shape=(len(ops),)))  # a uniformly random permutation
  step_keys = jnp.stack([jax.random.key_data(rs.key()) for _ in ops])
  impl = jax.random.key_impl(key)

  def step(s, x):
    # A loop keeps one copy of the switch in the program (unrolled, compile time grows 8-fold).
    return jax.lax.switch(order[s], ops, jax.random.wrap_key_data(step_keys[s], impl=impl), x)

  x = jax.lax.fori_loop(0, len(ops), step, image)
  x = _jpeg(rs, x, t, 30.0, 95.0, use_jpeg)
  return finish(jnp.where(t > 0, x, image)), {"order": order}


@register("wqi")
def wqi(key, image, intensity, **overrides):
  """The universal degradation model's general ("WQI") training recipe, one sample per call.

  In order, each with its probability: focus blur (p 0.7; disk radius ≤ `focus_max`, default 30 px
  at a 512-px short side, scaled to the image: the paper gives "σ ≤ 30" without the image size),
  motion blur (p 0.5), exposure (p 0.2), 1/f noise (p 0.3), Gaussian noise (p 0.4, σ ~ Exp(mean
  0.03)); then JPEG with quality uniform in 30–96. The paper draws three such samples per photo.
  Blur sizes scale with the short side, or with `side` when given: a crop degraded with `side`=S
  blurs as a crop of an S-px photo would (so small training crops match full-size test images).
  """
  kn = Knobs("wqi", overrides, ("jpeg", "focus_max", "side"))
  use_jpeg = bool(kn.static("jpeg", True))
  side = float(kn.static("side", min(image.shape[:2])))
  if side <= 0:
    raise ConfigError(f"degradation 'wqi': side must be positive, got {side}")
  focus_max = float(kn.static("focus_max", 30.0 * side / 512.0))
  t = jnp.clip(jnp.asarray(intensity, jnp.float32), 0.0, 1.0)
  rs = Stream(key, 24)
  on = rs.uniform(shape=(5,)) < jnp.asarray([0.7, 0.5, 0.2, 0.3, 0.4])
  x = image
  radius = rs.uniform(0.0, focus_max) * t
  size = 2 * int(math.ceil(focus_max)) + 3
  x = jnp.where(on[0], convolve(x, disk_kernel(size, radius)), x)
  motion_t = rs.uniform() * t
  motion = {} if not kn.given("side") else dict(length=MOTION_FRACTION * side * motion_t,
                                                size=odd_size(MOTION_FRACTION * side) + 2)
  x = jnp.where(on[1], registry.get("motion_blur")(rs.key(), x, motion_t, **motion)[0], x)
  x = jnp.where(on[2], registry.get("exposure")(rs.key(), x, rs.uniform() * t)[0], x)
  pink_sigma = rs.uniform(0.0, 0.15) * t
  x = jnp.where(on[3], jnp.clip(x + pink_sigma * pink_field(rs.key(), x.shape, 1.0), 0.0, 1.0), x)
  sigma = -0.03 * jnp.log(rs.uniform()) * t  # exponential with mean 0.03
  x = jnp.where(on[4], jnp.clip(x + sigma * rs.field_normal(x.shape), 0.0, 1.0), x)
  x = _jpeg(rs, x, t, 30.0, 96.0, use_jpeg)
  return finish(jnp.where(t > 0, x, image)), {"applied": on, "focus_radius": radius, "noise_sigma": sigma}


GENDEG_TYPES = ("haze", "rain", "snow", "raindrop", "motion_blur", "low_light")


@register("mixture")
def mixture(key, image, intensity, **overrides):
  """`k` (default 2) distinct types drawn from `types` (default the GenDeg six), applied in the
  order listed (scene → lens → camera → sensor), each at the given intensity. GenDeg's own mixtures
  are "snowy and hazy" and "rainy and hazy": `types=['haze', 'rain']` or `['haze', 'snow']`, k=2.
  Under vmap every listed type is evaluated and the unselected ones discarded.
  """
  kn = Knobs("mixture", overrides, ("types", "k"))
  types = kn.static("types", GENDEG_TYPES)
  types = tuple(t.strip() for t in types.split(",")) if isinstance(types, str) else tuple(types)
  k = int(kn.static("k", 2))
  if not 1 <= k <= len(types):
    raise ConfigError(f"degradation 'mixture': k must be in [1, {len(types)}] for types {list(types)}, got {k}")
  for name in types:
    registry.get(name)
  rs = Stream(key, 3 * len(types))
  u = rs.uniform(shape=(len(types),))
  chosen = u <= jnp.sort(u)[k - 1]  # a uniformly random k-subset
  x = image
  params = {}
  for i, name in enumerate(types):
    out, p = registry.get(name)(rs.key(), x, intensity)
    x = jnp.where(chosen[i], out, x)
    params[name] = p
  return finish(x), {"chosen": chosen, **params}


__all__ = ["apply_spec", "bsrgan", "mixture", "realesrgan", "wqi"]
