"""Layers whose parameters carry logical axis names, so sharding is a config rule, not code.

Logical axes used across jaxdeg models:
  'kh', 'kw'  convolution window            'in'   input features/channels
  'out'       output features/channels      'heads' attention heads (where split out)
`jaxdeg.train.partitioning` maps them to mesh axes with `config.sharding.rules`
(default: 'out' -> 'fsdp', everything else replicated; a dimension that the mesh axis
does not divide stays replicated).
"""

import flax.linen as nn

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


def LayerNorm(**kw):
  return nn.LayerNorm(scale_init=logical(_ones, VECTOR_AXES), bias_init=logical(_zeros, VECTOR_AXES), **kw)


def GroupNorm(num_groups=32, **kw):
  return nn.GroupNorm(num_groups=num_groups, scale_init=logical(_ones, VECTOR_AXES),
                      bias_init=logical(_zeros, VECTOR_AXES), **kw)


def param(module: nn.Module, name, init, shape, axes):
  """A free parameter (e.g. a per-channel scale) with logical axes."""
  return module.param(name, logical(init, axes), shape)


__all__ = ["Conv", "ConvTranspose", "Dense", "LayerNorm", "GroupNorm", "param", "logical",
           "CONV_AXES", "DENSE_AXES", "VECTOR_AXES"]
