"""The 1×1 convolution the restorers use most, written as a matmul.

Keeps `nn.Conv`'s parameter names, shapes and init ('kernel' (1, 1, in, out), 'bias'), so
parameter trees and imported weights are the same as with `layers.Conv(features, (1, 1))`.
XLA:CPU runs a 1×1 convolution ~2× slower than a 2-D matmul, and its kernel gradient ~5× slower
when (B, H, W) stay separate contraction axes; on GPU/TPU both forms lower to the same GEMM.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.models import layers

_lecun = nn.initializers.lecun_normal()
_zeros = nn.initializers.zeros_init()


class PointwiseConv(nn.Module):
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, in_scale=None, in_shift=None):
    """`in_scale`/`in_shift` (per input channel): the convolution of x·in_scale + in_shift, with the
    affine folded into the weights: one pass over the activation fewer (a LayerNorm's scale and
    bias, see `AffineParams`)."""
    k = layers.param(self, "kernel", _lecun, (1, 1, x.shape[-1], self.features), layers.CONV_AXES)[0, 0]
    b = layers.param(self, "bias", _zeros, (self.features,), layers.VECTOR_AXES) if self.use_bias else None
    if in_scale is not None:
      b = in_shift @ k if b is None else b + in_shift @ k
      k = in_scale[:, None] * k
    y = x.reshape(-1, x.shape[-1]).astype(self.dtype) @ k.astype(self.dtype)
    y = y.reshape(x.shape[:-1] + (self.features,))
    return y if b is None else y + b.astype(self.dtype)


class AffineParams(nn.Module):
  """A LayerNorm's 'scale' and 'bias' (nn.LayerNorm's names, shapes and init) without the
  normalisation: the restorers apply them in the next 1×1 convolution (PointwiseConv's in_scale,
  in_shift). XLA:CPU runs the affine as a separate pass over the activation otherwise."""

  @nn.compact
  def __call__(self, features):
    return (layers.param(self, "scale", nn.initializers.ones_init(), (features,), layers.VECTOR_AXES),
            layers.param(self, "bias", _zeros, (features,), layers.VECTOR_AXES))


def channel_standardize(x, epsilon, dtype):
  """(x − mean) / sqrt(var + ε) over the channels, two-pass variance, statistics in float32 at
  least (as nn.LayerNorm(use_fast_variance=False) computes them), result in `dtype`."""
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  centred = x32 - jnp.mean(x32, axis=-1, keepdims=True)
  variance = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
  return (centred * jax.lax.rsqrt(variance + epsilon)).astype(dtype)
