"""PromptIR (Potlapalli et al. 2023) on a Restormer backbone (Zamir et al. 2022), NHWC Flax Linen.

Mirrors the official PromptIR model with `decoder=True` (the published configuration): prompt blocks
after the latent and decoder levels 3 and 2, each followed by a "noise" transformer block over
features ‖ prompt and a 1×1 reduction. With `prompts=False` the network is Restormer.
The official model also defines seven 1×1 convs it never calls (`chnl_reduce*`,
`reduce_noise_channel_*`, 0.2 M parameters); they are left out here, so weight import skips them.
Any input size works: H, W are reflect-padded to a multiple of 8 and the output is cropped back.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.errors import ConfigError, UserError
from jaxdeg.models import layers
from jaxdeg.models.restore.common import PointwiseConv
from jaxdeg.models.restore.ops import pad_to_multiple, pixel_shuffle, pixel_unshuffle


class BiasLayerNorm(nn.Module):
  """Restormer's WithBias LayerNorm over channels (eps 1e-5, two-pass variance)."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return layers.LayerNorm(epsilon=1e-5, use_fast_variance=False, dtype=self.dtype, name="norm")(x)


class MDTA(nn.Module):
  """Multi-Dconv-head transposed attention: attention across channels, linear in H·W."""
  heads: int
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    if c % self.heads:
      raise ConfigError(f"MDTA: {c} channels do not split into {self.heads} heads")
    qkv = PointwiseConv(3 * c, self.use_bias, self.dtype, name="qkv")(x)
    qkv = layers.DepthwiseConv((3, 3), self.use_bias, self.dtype, name="qkv_dwconv")(qkv)
    q, k, v = (t.reshape(b, h * w, self.heads, c // self.heads) for t in jnp.split(qkv, 3, axis=-1))
    # L2 over positions (as torch F.normalize, eps 1e-12) so q·k is a cosine similarity
    l2 = lambda t: t / jnp.maximum(jnp.linalg.norm(t.astype(jnp.float32), axis=1, keepdims=True), 1e-12)
    temp = layers.param(self, "temperature", nn.initializers.ones_init(), (self.heads,), ("heads",))
    attn = jnp.einsum("bnhc,bnhd->bhcd", l2(q), l2(k)) * temp[:, None, None]
    attn = jax.nn.softmax(attn, axis=-1).astype(self.dtype)
    out = jnp.einsum("bhcd,bnhd->bnhc", attn, v).reshape(b, h, w, c)
    return PointwiseConv(c, self.use_bias, self.dtype, name="project_out")(out)


class GDFN(nn.Module):
  """Gated-Dconv feed-forward: 1×1 expand → 3×3 depthwise → GELU(x1)·x2 → 1×1."""
  expansion: float = 2.66
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    hidden = int(c * self.expansion)
    y = PointwiseConv(2 * hidden, self.use_bias, self.dtype, name="project_in")(x)
    y = layers.DepthwiseConv((3, 3), self.use_bias, self.dtype, name="dwconv")(y)
    y1, y2 = jnp.split(y, 2, axis=-1)
    y = nn.gelu(y1, approximate=False) * y2
    return PointwiseConv(c, self.use_bias, self.dtype, name="project_out")(y)


class TransformerBlock(nn.Module):
  heads: int
  expansion: float = 2.66
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x + MDTA(self.heads, self.use_bias, self.dtype, name="attn")(
        BiasLayerNorm(self.dtype, name="norm1")(x))
    return x + GDFN(self.expansion, self.use_bias, self.dtype, name="ffn")(
        BiasLayerNorm(self.dtype, name="norm2")(x))


class PromptGenBlock(nn.Module):
  """Input-conditioned prompt: softmax-weighted sum of learned prompt maps, resized, 3×3 conv."""
  prompt_dim: int
  prompt_len: int = 5
  prompt_size: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, _ = x.shape
    # torch.rand init, stored NHWC: (1, len, size, size, dim)
    prompts = layers.param(self, "prompt_param", nn.initializers.uniform(1.0),
                           (1, self.prompt_len, self.prompt_size, self.prompt_size, self.prompt_dim),
                           (None, None, None, None, "out"))
    emb = jnp.mean(x, axis=(1, 2))
    logits = layers.Dense(self.prompt_len, dtype=self.dtype, name="linear_layer")(emb)
    weights = jax.nn.softmax(logits.astype(jnp.float32), -1)
    prompt = jnp.einsum("bl,lhwc->bhwc", weights, prompts[0]).astype(self.dtype)
    # half-pixel bilinear without antialiasing = torch F.interpolate(mode="bilinear")
    prompt = jax.image.resize(prompt, (b, h, w, self.prompt_dim), "bilinear", antialias=False)
    return layers.Conv(self.prompt_dim, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                       name="conv3x3")(prompt)


class PromptIR(nn.Module):
  """PromptIR all-in-one restorer: output = input + f(input), images NHWC."""
  dim: int = 48
  num_blocks: Sequence[int] = (4, 6, 6, 8)
  num_refinement_blocks: int = 4
  heads: Sequence[int] = (1, 2, 4, 8)
  ffn_expansion_factor: float = 2.66
  use_bias: bool = False
  prompts: bool = True
  prompt_len: int = 5
  prompt_dims: Sequence[int] = (64, 128, 320)  # levels 1 (H/2), 2 (H/4), 3 (H/8)
  prompt_sizes: Sequence[int] = (64, 32, 16)
  in_channels: int = 3
  out_channels: int = 3
  remat: bool = False  # recompute transformer blocks in the backward pass to save memory
  dtype: Any = jnp.float32

  def _blocks(self, x, n, heads, name):
    block = nn.remat(TransformerBlock) if self.remat else TransformerBlock
    for i in range(n):
      x = block(heads, self.ffn_expansion_factor, self.use_bias, self.dtype, name=f"{name}_{i}")(x)
    return x

  def _conv(self, features, k, name):
    if k == 1:
      return PointwiseConv(features, self.use_bias, self.dtype, name=name)
    return layers.Conv(features, (k, k), padding=k // 2, use_bias=self.use_bias, dtype=self.dtype, name=name)

  def _prompt(self, x, level):
    """Prompt block: concat a generated prompt, one transformer block, 1×1 to the width the next
    upsampling expects (official: 2·dim at level 1, 4·dim at levels 2 and 3)."""
    p = PromptGenBlock(self.prompt_dims[level - 1], self.prompt_len, self.prompt_sizes[level - 1],
                       self.dtype, name=f"prompt{level}")(x)
    x = jnp.concatenate([x, p], axis=-1)
    x = self._blocks(x, 1, self.heads[2], f"noise_level{level}")
    return self._conv(self.dim * 2 ** min(level, 2), 1, f"reduce_noise_level{level}")(x)

  def _down(self, x, name):
    return pixel_unshuffle(self._conv(x.shape[-1] // 2, 3, name)(x), 2)

  def _up(self, x, name):
    return pixel_shuffle(self._conv(x.shape[-1] * 2, 3, name)(x), 2)

  @nn.compact
  def __call__(self, inp):
    if inp.ndim != 4 or inp.shape[-1] != self.in_channels:
      raise UserError(f"PromptIR: expected NHWC input with {self.in_channels} channels, "
                       f"got shape {inp.shape}")
    if self.out_channels > self.in_channels:
      raise ConfigError(f"PromptIR: out_channels {self.out_channels} > in_channels {self.in_channels} "
                       "leaves the global residual undefined")
    if len(self.num_blocks) != 4 or len(self.heads) != 4:
      raise ConfigError(f"PromptIR: num_blocks {tuple(self.num_blocks)} and heads {tuple(self.heads)} "
                       "need one entry per level (4)")
    x_in, (h, w) = pad_to_multiple(inp, 8)
    d, nb, hd = self.dim, self.num_blocks, self.heads
    enc1 = self._blocks(self._conv(d, 3, "patch_embed")(x_in), nb[0], hd[0], "encoder_level1")
    enc2 = self._blocks(self._down(enc1, "down1_2"), nb[1], hd[1], "encoder_level2")
    enc3 = self._blocks(self._down(enc2, "down2_3"), nb[2], hd[2], "encoder_level3")
    x = self._blocks(self._down(enc3, "down3_4"), nb[3], hd[3], "latent")
    if self.prompts:
      x = self._prompt(x, 3)
    x = jnp.concatenate([self._up(x, "up4_3"), enc3], axis=-1)
    x = self._blocks(self._conv(d * 4, 1, "reduce_chan_level3")(x), nb[2], hd[2], "decoder_level3")
    if self.prompts:
      x = self._prompt(x, 2)
    x = jnp.concatenate([self._up(x, "up3_2"), enc2], axis=-1)
    x = self._blocks(self._conv(d * 2, 1, "reduce_chan_level2")(x), nb[1], hd[1], "decoder_level2")
    if self.prompts:
      x = self._prompt(x, 1)
    x = jnp.concatenate([self._up(x, "up2_1"), enc1], axis=-1)
    x = self._blocks(x, nb[0], hd[0], "decoder_level1")
    x = self._blocks(x, self.num_refinement_blocks, hd[0], "refinement")
    x = self._conv(self.out_channels, 3, "output")(x)
    x = x + x_in[..., self.in_channels - self.out_channels:].astype(x.dtype)
    return x[:, :h, :w, :]
