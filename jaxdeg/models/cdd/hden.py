"""HDEN, the global (homogeneous) degradation encoder e_g (the official `LPE`), NHWC.

Two convolutional branches read the degraded image y: a long-range branch that opens with a k×k
conv of stride (k-1)/2 (the released configs use k = 3, i.e. stride 1 and no padding) and a
short-range branch of 3×3/1×1 convs with one stride-2 step. Each is global-average-pooled; the two
256-vectors are concatenated and mapped by a two-layer MLP to the 256-d embedding.
BatchNorm (torch's running-variance rule, norm.py) keeps its statistics in the `batch_stats`
collection: pass `train=True` with `mutable=['batch_stats']` while training.
"""
import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.models import layers
from jaxdeg.models.cdd.norm import TorchBatchNorm
from jaxdeg.models.cdd.ops import activation, torch_padding


class ConvBlock(nn.Module):
  """zero-pad → conv (bias) → BatchNorm → LeakyReLU(0.2): the official `Conv2dBlock` (post-activation)."""
  features: int
  kernel: int = 3
  stride: int = 1
  padding: int = 0

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride),
                    padding=torch_padding(self.padding), name="conv")(x)
    x = TorchBatchNorm(name="norm")(x, train)
    return activation("lrelu0.2")(x)


def long_range_stem(dim, kernel):
  """(features, kernel, stride, padding) of the first long-range block: stride (k-1)/2, no padding."""
  if kernel < 3 or kernel % 2 == 0:
    raise ValueError(f"encoder kernel must be odd and >= 3, got {kernel}")
  return (dim // 4, kernel, (kernel - 1) // 2, 0)


def short_range_specs(dim):
  """(features, kernel, stride, padding) of the short-range branch, shared by HDEN and IDEN."""
  return ((dim // 4, 3, 1, 1), (dim // 4, 1, 1, 0), (dim // 2, 3, 2, 1),
          (dim // 2, 1, 1, 0), (dim, 3, 1, 1), (dim, 1, 1, 0))


def run_blocks(x, specs, prefix, train):
  for i, (f, k, s, p) in enumerate(specs):
    x = ConvBlock(f, k, s, p, name=f"{prefix}_{i}")(x, train)
  return x


class HDEN(nn.Module):
  """Global degradation encoder: image [B, H, W, 3] → embedding [B, out_dim]."""
  dim: int = 256
  out_dim: int = 256
  kernel: int = 3  # first long-range conv (released configs: 3)

  @nn.compact
  def __call__(self, y, train: bool = False):
    d = self.dim
    long_specs = (long_range_stem(d, self.kernel), (d // 4, 3, 1, 1), (d // 2, 3, 1, 1), (d, 3, 1, 1))
    x_long = run_blocks(y, long_specs, "long_range", train)
    x_short = run_blocks(y, short_range_specs(d), "short_range", train)
    fea = jnp.concatenate([x_long.mean(axis=(1, 2)), x_short.mean(axis=(1, 2))], axis=-1)
    h = activation("lrelu0.1")(layers.Dense(d, name="mlp_in")(fea))
    return layers.Dense(self.out_dim, name="mlp_out")(h)


__all__ = ["ConvBlock", "HDEN"]
