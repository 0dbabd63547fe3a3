"""The 1×1 convolution the restorers use most, written as a matmul.

Keeps `nn.Conv`'s parameter names, shapes and init ('kernel' (1, 1, in, out), 'bias'), so
parameter trees and imported weights are the same as with `layers.Conv(features, (1, 1))`.
XLA:CPU runs a 1×1 convolution ~2× slower than a 2-D matmul, and its kernel gradient ~5× slower
when (B, H, W) stay separate contraction axes; on GPU/TPU both forms lower to the same GEMM.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.models import layers

_lecun = nn.initializers.lecun_normal()
_zeros = nn.initializers.zeros_init()


class PointwiseConv(nn.Module):
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = layers.param(self, "kernel", _lecun, (1, 1, x.shape[-1], self.features), layers.CONV_AXES)
    y = x.reshape(-1, x.shape[-1]).astype(self.dtype) @ k[0, 0].astype(self.dtype)
    y = y.reshape(x.shape[:-1] + (self.features,))
    if self.use_bias:
      y = y + layers.param(self, "bias", _zeros, (self.features,), layers.VECTOR_AXES).astype(self.dtype)
    return y
