"""NAFNet (Chen et al. 2022, "Simple Baselines for Image Restoration"), NHWC Flax Linen.

Layer for layer as the official model, so its weights can be imported: a U-Net of NAFBlocks with
2×2 stride-2 conv downsampling, 1×1 conv + PixelShuffle upsampling, additive skips and a global
residual. Any input size works: H, W are padded to a multiple of 2**len(enc_blocks) and the output is
cropped back: reflect by default (a seam without a dark border), or zeros (`pad_mode='constant'`) as
the official code, for its checkpoints.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.errors import ConfigError, UserError
from jaxdeg.models import layers
from jaxdeg.models.restore.common import AffineParams, PointwiseConv, channel_standardize
from jaxdeg.models.restore.ops import pad_to_multiple, pixel_shuffle


def simple_gate(x):
  """Splits channels in two halves and multiplies them: a nonlinearity without an activation."""
  a, b = jnp.split(x, 2, axis=-1)
  return a * b


class NAFBlock(nn.Module):
  """LayerNorm → 1×1 → 3×3 depthwise → SimpleGate → SCA → 1×1, then an FFN with SimpleGate."""
  dw_expand: int = 2
  ffn_expand: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inp):
    c = inp.shape[-1]
    dw = c * self.dw_expand
    # torch LayerNorm2d (eps 1e-6, two-pass variance); its scale and bias are applied by the 1×1
    # convolution that follows (same parameters, one pass over the activation fewer)
    norm = lambda x: channel_standardize(x, 1e-6, self.dtype)
    x = PointwiseConv(dw, dtype=self.dtype, name="conv1")(norm(inp), *AffineParams(name="norm1")(c))
    x = layers.DepthwiseConv((3, 3), dtype=self.dtype, name="conv2")(x)
    x = simple_gate(x)
    # simplified channel attention: global average pool → 1×1 conv → channel-wise scale
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    x = x * PointwiseConv(dw // 2, dtype=self.dtype, name="sca")(s)
    x = PointwiseConv(c, dtype=self.dtype, name="conv3")(x)
    # zero-initialised residual scales: every block starts as the identity
    beta = layers.param(self, "beta", nn.initializers.zeros_init(), (c,), layers.VECTOR_AXES)
    gamma = layers.param(self, "gamma", nn.initializers.zeros_init(), (c,), layers.VECTOR_AXES)
    y = inp + x * beta.astype(x.dtype)
    x = PointwiseConv(c * self.ffn_expand, dtype=self.dtype, name="conv4")(norm(y), *AffineParams(name="norm2")(c))
    x = simple_gate(x)
    x = PointwiseConv(c, dtype=self.dtype, name="conv5")(x)
    return y + x * gamma.astype(x.dtype)


class NAFNet(nn.Module):
  """NAFNet restorer: output = input + f(input), images NHWC.

  When `out_channels` < `in_channels` the residual is taken from the last `out_channels` input
  channels (e.g. GenDeg's structure correction: clean ‖ generated in, corrected generated out).
  """
  width: int = 32
  enc_blocks: Sequence[int] = (2, 2, 4, 8)
  middle_blocks: int = 12
  dec_blocks: Sequence[int] = (2, 2, 2, 2)
  in_channels: int = 3
  out_channels: int = 3
  pad_mode: str = "reflect"  # or 'constant' (zeros)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inp):
    if len(self.enc_blocks) != len(self.dec_blocks):
      raise ConfigError(f"NAFNet: enc_blocks {tuple(self.enc_blocks)} and dec_blocks "
                       f"{tuple(self.dec_blocks)} must have the same length")
    if inp.ndim != 4 or inp.shape[-1] != self.in_channels:
      raise UserError(f"NAFNet: expected NHWC input with {self.in_channels} channels, got shape {inp.shape}")
    if self.out_channels > self.in_channels:
      raise ConfigError(f"NAFNet: out_channels {self.out_channels} > in_channels {self.in_channels} "
                       "leaves the global residual undefined")
    x_in, (h, w) = pad_to_multiple(inp, 2 ** len(self.enc_blocks), self.pad_mode)
    x = layers.Conv(self.width, (3, 3), padding=1, dtype=self.dtype, name="intro")(x_in)
    skips = []
    chan = self.width
    for i, n in enumerate(self.enc_blocks):
      for j in range(n):
        x = NAFBlock(dtype=self.dtype, name=f"enc{i}_{j}")(x)
      skips.append(x)
      chan *= 2
      x = layers.Conv(chan, (2, 2), strides=2, padding="VALID", dtype=self.dtype, name=f"down{i}")(x)
    for j in range(self.middle_blocks):
      x = NAFBlock(dtype=self.dtype, name=f"middle_{j}")(x)
    for i, (n, skip) in enumerate(zip(self.dec_blocks, skips[::-1])):
      x = PointwiseConv(chan * 2, use_bias=False, dtype=self.dtype, name=f"up{i}")(x)
      x = pixel_shuffle(x, 2)
      chan //= 2
      x = x + skip
      for j in range(n):
        x = NAFBlock(dtype=self.dtype, name=f"dec{i}_{j}")(x)
    x = layers.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype, name="ending")(x)
    x = x + x_in[..., self.in_channels - self.out_channels:].astype(x.dtype)
    return x[:, :h, :w, :]
