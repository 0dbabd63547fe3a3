"""Registry of procedural degradations.

Every degradation is a pure `jnp` function on ONE float image in [0, 1] of shape (H, W, 3):

    fn(key, image, intensity, **overrides) -> (degraded_image, params)

`intensity` in [0, 1] (0 = untouched, 1 = strongest realistic setting) is mapped to physical
parameters; `overrides` set any of those parameters directly; `params` is a dict of the
scalar/array parameters actually used. `apply` adds batching (vmap over leading dims with
independent keys) so callers never write the vmap themselves.

`apply(..., other_fields=k)` and `apply_spec(..., other_fields=k)` with k > 0 draw the same
parameters from a key but another realisation of its random fields (noise, grain, particles,
fill): two images that share a degradation without sharing its noise pattern, as two real photos
would. k is an explicit argument: what a traced call computes depends on its arguments only.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from jaxdeg.degrade._ops import drawing_fields
from jaxdeg.errors import ConfigError

_REGISTRY: dict[str, Callable] = {}


def register(name: str):
  def wrap(fn):
    if name in _REGISTRY:
      raise ValueError(f"degradation {name!r} registered twice")
    _REGISTRY[name] = fn
    return fn
  return wrap


def available() -> list[str]:
  return sorted(_REGISTRY)


def get(name: str) -> Callable:
  if name not in _REGISTRY:
    raise ConfigError(f"unknown degradation {name!r}; available: {', '.join(available())}")
  return _REGISTRY[name]


def apply(key, images, name: str, intensity, *, other_fields=0, **overrides):
  """Degrade `images` of shape (..., H, W, 3) in [0, 1]; returns (degraded, params).

  `intensity` is a scalar or has the batch shape (one intensity per image). `other_fields` > 0:
  the same parameters, another realisation of the random fields (see the module docstring).
  """
  with drawing_fields(other_fields):
    return _apply(key, images, name, intensity, overrides)


# On CPU a batch is degraded a few images at a time (a loop over vmapped chunks): the
# intermediates of a whole batch (FFT planes, random fields: hundreds of MB at 32 × 256²) fall out
# of cache and are freshly paged in on every call; chunks of ~2 × 256² pixels run 1.3–2.3× faster
# per image. Accelerators keep the single vmap.
CPU_CHUNK_PIXELS = 2 * 256 * 256


def _cpu_chunk(hw):
  if jax.default_backend() != "cpu":
    return 1 << 62
  return max(1, CPU_CHUNK_PIXELS // (hw[0] * hw[1]))


def _apply(key, images, name, intensity, overrides):
  fn = get(name)
  images = jnp.asarray(images)
  if images.ndim < 3 or images.shape[-1] != 3:
    raise ValueError(f"degrade.apply({name!r}): expected images (..., H, W, 3), got shape {images.shape}")
  batch_shape = images.shape[:-3]
  if not batch_shape:
    return fn(key, images, jnp.asarray(intensity, jnp.float32), **overrides)
  n = 1
  for d in batch_shape:
    n *= d
  flat = images.reshape((n,) + images.shape[-3:])
  inten = jnp.broadcast_to(jnp.asarray(intensity, jnp.float32), batch_shape).reshape(n)
  keys = jax.random.split(key, n)
  one = lambda k, im, i: fn(k, im, i, **overrides)
  chunk = _cpu_chunk(images.shape[-3:-1])
  if chunk < n:
    out, params = jax.lax.map(lambda a: one(*a), (keys, flat, inten), batch_size=chunk)
  else:
    out, params = jax.vmap(one)(keys, flat, inten)
  out = out.reshape(batch_shape + out.shape[1:])
  params = jax.tree.map(lambda p: p.reshape(batch_shape + p.shape[1:]), params)
  return out, params


# ---------------------------------------------------------------------------------------------
# Specs: how configs and data pipelines name a degradation.

def _spec_dict(spec, where):
  if isinstance(spec, str):
    return {"name": spec}
  if hasattr(spec, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
    spec = spec.to_dict()
  if not isinstance(spec, dict):
    raise ConfigError(f"{where}: expected a dict with a 'name' (or a list of them), got {type(spec).__name__}")
  if "name" not in spec:
    raise ConfigError(f"{where}: missing 'name'; available: {', '.join(available())}")
  return dict(spec)


def parse_spec(spec):
  """Normalise a spec into a list of stages (name, intensity, p, overrides); raises ConfigError.

  A stage is {'name': str, 'intensity': float or [lo, hi] (uniform per image; default 1.0),
  'p': probability of applying it per image (default 1.0), other keys: overrides}. A spec is a
  stage, a name, or a list of stages applied in order.
  """
  many = isinstance(spec, (list, tuple))
  stages = []
  for i, raw in enumerate(spec if many else [spec]):
    where = f"degradation spec[{i}]" if many else "degradation spec"
    d = _spec_dict(raw, where)
    name = d.pop("name")
    get(name)
    intensity = d.pop("intensity", 1.0)
    bounds = tuple(intensity) if isinstance(intensity, (list, tuple)) else (intensity,)
    if len(bounds) not in (1, 2) or not all(isinstance(b, (int, float)) and 0.0 <= b <= 1.0 for b in bounds):
      raise ConfigError(f"{where} ({name}): 'intensity' must be a number in [0, 1] or a [low, high] pair "
                        f"within it, got {intensity!r}")
    p = d.pop("p", 1.0)
    if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
      raise ConfigError(f"{where} ({name}): 'p' must be a probability in [0, 1], got {p!r}")
    stages.append((name, bounds, float(p), d))
  return stages, many


def apply_spec(key, images, spec, *, other_fields=0):
  """Degrade images (..., H, W, 3) as `spec` says; returns (degraded, params). `other_fields` as
  in `apply`.

  params holds each stage's parameters plus 'intensity' and 'applied' per image; for a list spec it
  is a dict keyed '<index>_<name>'.
  """
  stages, many = parse_spec(spec)
  images = jnp.asarray(images, jnp.float32)
  batch = images.shape[:-3]
  all_params = {}
  for i, (name, bounds, p, overrides) in enumerate(stages):
    key, k_int, k_p, k_apply = jax.random.split(key, 4)
    if len(bounds) == 2:
      intensity = jax.random.uniform(k_int, batch, jnp.float32, bounds[0], bounds[1])
    else:
      intensity = jnp.full(batch, bounds[0], jnp.float32)
    out, params = apply(k_apply, images, name, intensity, other_fields=other_fields, **overrides)
    applied = jax.random.uniform(k_p, batch) < p if p < 1.0 else jnp.ones(batch, bool)
    if p < 1.0:
      out = jnp.where(applied[..., None, None, None], out, images)
    images = out
    all_params[f"{i}_{name}"] = dict(params, intensity=intensity, applied=applied)
  return images, (all_params if many else next(iter(all_params.values())))
