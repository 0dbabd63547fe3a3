"""Registry of procedural degradations.

Every degradation is a pure `jnp` function on ONE float image in [0, 1] of shape (H, W, 3):

    fn(key, image, intensity, **overrides) -> (degraded_image, params)

`intensity` in [0, 1] (0 = untouched, 1 = strongest realistic setting) is mapped to physical
parameters; `overrides` set any of those parameters directly; `params` is a dict of the
scalar/array parameters actually used. `apply` adds batching (vmap over leading dims with
independent keys) so callers never write the vmap themselves.
"""
from typing import Callable

import jax
import jax.numpy as jnp

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


def apply(key, images, name: str, intensity, **overrides):
  """Degrade `images` of shape (..., H, W, 3) in [0, 1]; returns (degraded, params).

  `intensity` is a scalar or has the batch shape (one intensity per image).
  """
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
  out, params = jax.vmap(lambda k, im, i: fn(k, im, i, **overrides))(keys, flat, inten)
  out = out.reshape(batch_shape + out.shape[1:])
  params = jax.tree.map(lambda p: p.reshape(batch_shape + p.shape[1:]), params)
  return out, params
