"""Layers whose parameters carry logical axis names, so sharding is a config rule, not code.

Logical axes used across jaxdeg models:
  'kh', 'kw'  convolution window            'in'   input features/channels
  'out'       output features/channels      'heads' attention heads (where split out)
`jaxdeg.train.partitioning` maps them to mesh axes with `config.sharding.rules`
(default: 'out' -> 'fsdp', everything else replicated; a dimension that the mesh axis
does not divide stays replicated).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_AXES = ("kh", "kw", "in", "out")
DENSE_AXES = ("in", "out")
VECTOR_AXES = ("out",)

_lecun = nn.initializers.lecun_normal()
_zeros = nn.initializers.zeros_init()
_ones = nn.initializers.ones_init()


def logical(init, axes):
  return nn.with_logical_partitioning(init, axes)


def Conv(features, kernel_size=(3, 3), *, kernel_init=_lecun, bias_init=_zeros, **kw):
  """`nn.Conv` with logically partitioned kernel and bias."""
  return nn.Conv(features, kernel_size, kernel_init=logical(kernel_init, CONV_AXES),
                 bias_init=logical(bias_init, VECTOR_AXES), **kw)


def ConvTranspose(features, kernel_size=(2, 2), *, kernel_init=_lecun, bias_init=_zeros, **kw):
  """`nn.ConvTranspose` with logically partitioned kernel and bias."""
  return nn.ConvTranspose(features, kernel_size, kernel_init=logical(kernel_init, CONV_AXES),
                          bias_init=logical(bias_init, VECTOR_AXES), **kw)


def Dense(features, *, kernel_init=_lecun, bias_init=_zeros, **kw):
  """`nn.Dense` with logically partitioned kernel and bias."""
  return nn.Dense(features, kernel_init=logical(kernel_init, DENSE_AXES),
                  bias_init=logical(bias_init, VECTOR_AXES), **kw)


class DepthwiseConv(nn.Module):
  """Stride-1 k×k per-channel conv ('SAME' padding), parameters laid out exactly as
  `nn.Conv(C, (k, k), feature_group_count=C)` (kernel (k, k, 1, C), bias (C,)).

  XLA's CPU backend runs grouped convolutions ~25× slower than the same arithmetic written as
  k² shifted multiply-adds, so on CPU it uses the latter; on GPU/TPU the grouped conv.
  """
  kernel_size: tuple = (3, 3)
  use_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    kh, kw = self.kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
      raise ValueError(f"DepthwiseConv: odd kernel sizes only, got {self.kernel_size}")
    kernel = self.param("kernel", logical(_lecun, CONV_AXES), (kh, kw, 1, c))
    dtype = self.dtype or x.dtype
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if jax.default_backend() == "cpu":
      h, w = x.shape[-3], x.shape[-2]
      xp = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)])
      y = sum(xp[..., i:i + h, j:j + w, :] * kernel[i, j, 0] for i in range(kh) for j in range(kw))
    else:
      y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", feature_group_count=c,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", logical(_zeros, VECTOR_AXES), (c,)).astype(dtype)
    return y


def LayerNorm(**kw):
  return nn.LayerNorm(scale_init=logical(_ones, VECTOR_AXES), bias_init=logical(_zeros, VECTOR_AXES), **kw)


def GroupNorm(num_groups=32, **kw):
  return nn.GroupNorm(num_groups=num_groups, scale_init=logical(_ones, VECTOR_AXES),
                      bias_init=logical(_zeros, VECTOR_AXES), **kw)


def param(module: nn.Module, name, init, shape, axes):
  """A free parameter (e.g. a per-channel scale) with logical axes."""
  return module.param(name, logical(init, axes), shape)


__all__ = ["Conv", "ConvTranspose", "DepthwiseConv", "Dense", "LayerNorm", "GroupNorm", "param", "logical",
           "CONV_AXES", "DENSE_AXES", "VECTOR_AXES"]
