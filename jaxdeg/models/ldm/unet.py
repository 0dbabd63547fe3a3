"""Stable Diffusion 1.x's conditional UNet (diffusers `UNet2DConditionModel`), NHWC Flax Linen.

Down: CrossAttnDownBlock2D where `attention_levels` is true, else DownBlock2D (resnets, then a
stride-2 conv except at the last level); mid: UNetMidBlock2DCrossAttn (resnet, transformer,
resnet); up: the mirror with one extra resnet per level, each concatenating a skip. Transformers
are diffusers' Transformer2DModel (GroupNorm, 1×1 conv or linear proj_in/out) of
BasicTransformerBlocks (self-attention, cross-attention to the context, GEGLU feed-forward).
Time: sinusoidal embedding (flip_sin_to_cos, freq_shift) → 2-layer SiLU MLP, added in every resnet.

GenDeg uses 8 input channels: noisy latent ‖ clean-image latent. `num_heads` is the number of
heads per level (SD-1.x's diffusers config calls it `attention_head_dim`; it is a head count).
"""
import math
from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.models import layers
from jaxdeg.models.ldm.common import Downsample, ResnetBlock, Upsample, attention, group_norm


def timestep_embedding(t, dim, flip_sin_to_cos=True, freq_shift=0.0, max_period=10000.0):
  """diffusers' `get_timestep_embedding`: (B,) float timesteps → (B, dim)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift))
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  if flip_sin_to_cos:
    emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


class CrossAttention(nn.Module):
  """diffusers `Attention` as used in BasicTransformerBlock: unbiased q/k/v, biased output."""
  heads: int
  dtype: Any = jnp.float32
  implementation: Optional[str] = None

  @nn.compact
  def __call__(self, x, context=None):
    c = x.shape[-1]
    context = x if context is None else context
    q = layers.Dense(c, use_bias=False, dtype=self.dtype, name="to_q")(x)
    k = layers.Dense(c, use_bias=False, dtype=self.dtype, name="to_k")(context)
    v = layers.Dense(c, use_bias=False, dtype=self.dtype, name="to_v")(context)
    out = attention(q, k, v, self.heads, self.implementation)
    return layers.Dense(c, dtype=self.dtype, name="to_out_0")(out)


class GEGLU(nn.Module):
  inner: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    value, gate = jnp.split(layers.Dense(2 * self.inner, dtype=self.dtype, name="proj")(x), 2, axis=-1)
    return value * nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
  """GEGLU feed-forward, inner width 4·dim: proj → value · GELU(gate) → linear."""
  mult: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    h = GEGLU(self.mult * dim, self.dtype, name="net_0")(x)
    return layers.Dense(dim, dtype=self.dtype, name="net_2")(h)


class TimestepEmbedding(nn.Module):
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, emb):
    emb = layers.Dense(self.features, dtype=self.dtype, name="linear_1")(emb)
    return layers.Dense(self.features, dtype=self.dtype, name="linear_2")(nn.silu(emb))


class BasicTransformerBlock(nn.Module):
  heads: int
  dtype: Any = jnp.float32
  implementation: Optional[str] = None

  @nn.compact
  def __call__(self, x, context):
    norm = lambda name: layers.LayerNorm(epsilon=1e-5, use_fast_variance=False, dtype=self.dtype, name=name)
    attn = lambda name: CrossAttention(self.heads, self.dtype, self.implementation, name=name)
    x = x + attn("attn1")(norm("norm1")(x))
    x = x + attn("attn2")(norm("norm2")(x), context)
    return x + FeedForward(dtype=self.dtype, name="ff")(norm("norm3")(x))


class Transformer2D(nn.Module):
  """diffusers `Transformer2DModel` on continuous input: GN → proj_in → blocks → proj_out → + x."""
  heads: int
  num_layers: int = 1
  groups: int = 32
  use_linear_projection: bool = False
  dtype: Any = jnp.float32
  implementation: Optional[str] = None

  @nn.compact
  def __call__(self, x, context):
    b, h, w, c = x.shape
    y = group_norm(self.groups, 1e-6, self.dtype, "norm")(x)
    proj = (lambda name: layers.Dense(c, dtype=self.dtype, name=name)) if self.use_linear_projection else (
        lambda name: layers.Conv(c, (1, 1), dtype=self.dtype, name=name))
    # a 1×1 conv and a linear layer are the same map on NHWC: only the parameter layout differs
    y = proj("proj_in")(y).reshape(b, h * w, c)
    for i in range(self.num_layers):
      y = BasicTransformerBlock(self.heads, self.dtype, self.implementation, name=f"transformer_blocks_{i}")(y, context)
    y = proj("proj_out")(y.reshape(b, h, w, c))
    return x + y


class _Blocks(nn.Module):
  """Shared fields of the down/mid/up blocks."""
  channels: int
  heads: int = 8
  has_attention: bool = True
  groups: int = 32
  eps: float = 1e-5
  transformer_layers: int = 1
  use_linear_projection: bool = False
  remat: bool = False
  dtype: Any = jnp.float32
  implementation: Optional[str] = None

  def resnet(self, name):
    cls = nn.remat(ResnetBlock) if self.remat else ResnetBlock
    return cls(self.channels, self.groups, self.eps, self.dtype, name=name)

  def transformer(self, name):
    cls = nn.remat(Transformer2D) if self.remat else Transformer2D
    return cls(self.heads, self.transformer_layers, self.groups, self.use_linear_projection, self.dtype,
               self.implementation, name=name)


class DownBlock(_Blocks):
  num_layers: int = 2
  add_downsample: bool = True

  @nn.compact
  def __call__(self, x, temb, context):
    skips = []
    for j in range(self.num_layers):
      x = self.resnet(f"resnets_{j}")(x, temb)
      if self.has_attention:
        x = self.transformer(f"attentions_{j}")(x, context)
      skips.append(x)
    if self.add_downsample:
      x = Downsample(self.channels, padding=1, dtype=self.dtype, name="downsamplers_0")(x)
      skips.append(x)
    return x, skips


class MidBlock(_Blocks):
  @nn.compact
  def __call__(self, x, temb, context):
    x = self.resnet("resnets_0")(x, temb)
    x = self.transformer("attentions_0")(x, context)
    return self.resnet("resnets_1")(x, temb)


class UpBlock(_Blocks):
  num_layers: int = 3
  add_upsample: bool = True

  @nn.compact
  def __call__(self, x, temb, context, skips, upsample_size=None):
    for j in range(self.num_layers):
      x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = self.resnet(f"resnets_{j}")(x, temb)
      if self.has_attention:
        x = self.transformer(f"attentions_{j}")(x, context)
    if self.add_upsample:
      x = Upsample(self.channels, dtype=self.dtype, name="upsamplers_0")(x, upsample_size)
    return x


class UNet(nn.Module):
  """ε/v-predicting UNet: (x (B, H, W, in_channels), timesteps (B,) or scalar, context (B, L, D))
  → (B, H, W, out_channels) in float32. Defaults are SD-1.x with GenDeg's 8 input channels."""
  in_channels: int = 8
  out_channels: int = 4
  block_out_channels: Sequence[int] = (320, 640, 1280, 1280)
  layers_per_block: int = 2
  attention_levels: Sequence[bool] = (True, True, True, False)
  num_heads: Union[int, Sequence[int]] = 8
  cross_attention_dim: int = 768
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  transformer_layers: int = 1
  use_linear_projection: bool = False
  flip_sin_to_cos: bool = True
  freq_shift: float = 0.0
  remat: bool = False  # recompute each resnet/transformer in the backward pass
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32
  attention_impl: Optional[str] = None  # jax.nn.dot_product_attention implementation ('cudnn', 'xla')

  def _check(self, x, context):
    n = len(self.block_out_channels)
    if len(self.attention_levels) != n:
      raise ValueError(f"UNet: attention_levels has {len(self.attention_levels)} entries for {n} levels")
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"UNet: expected x of shape (B, H, W, {self.in_channels}), got {x.shape}")
    if context.ndim != 3 or context.shape[-1] != self.cross_attention_dim:
      raise ValueError(f"UNet: expected context (B, L, {self.cross_attention_dim}), got {context.shape}")

  @nn.compact
  def __call__(self, x, timesteps, context):
    self._check(x, context)
    chans = tuple(self.block_out_channels)
    n = len(chans)
    heads = (self.num_heads,) * n if isinstance(self.num_heads, int) else tuple(self.num_heads)
    common = dict(groups=self.norm_num_groups, eps=self.norm_eps, transformer_layers=self.transformer_layers,
                  use_linear_projection=self.use_linear_projection, remat=self.remat, dtype=self.dtype,
                  implementation=self.attention_impl)

    t = jnp.broadcast_to(jnp.asarray(timesteps, jnp.float32), (x.shape[0],))
    temb = timestep_embedding(t, chans[0], self.flip_sin_to_cos, self.freq_shift).astype(self.dtype)
    temb = TimestepEmbedding(4 * chans[0], self.dtype, name="time_embedding")(temb)

    x = x.astype(self.dtype)
    context = context.astype(self.dtype)
    x = layers.Conv(chans[0], (3, 3), padding=1, dtype=self.dtype, name="conv_in")(x)
    skips = [x]
    for i, c in enumerate(chans):
      x, s = DownBlock(c, heads[i], self.attention_levels[i], num_layers=self.layers_per_block,
                       add_downsample=i < n - 1, name=f"down_blocks_{i}", **common)(x, temb, context)
      skips += s
    x = MidBlock(chans[-1], heads[-1], True, name="mid_block", **common)(x, temb, context)
    for i, c in enumerate(reversed(chans)):
      level = n - 1 - i
      tail = skips[-(self.layers_per_block + 1):]
      del skips[-(self.layers_per_block + 1):]
      # upsample to the next skip's size, so odd latent sizes work as in diffusers
      size = skips[-1].shape[1:3] if i < n - 1 else None
      x = UpBlock(c, heads[level], self.attention_levels[level], num_layers=self.layers_per_block + 1,
                  add_upsample=i < n - 1, name=f"up_blocks_{i}", **common)(x, temb, context, tail, size)
    x = nn.silu(group_norm(self.norm_num_groups, self.norm_eps, self.dtype, "conv_norm_out")(x))
    x = layers.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype, name="conv_out")(x)
    return x.astype(jnp.float32)
