"""Stable Diffusion's KL autoencoder (diffusers `AutoencoderKL`), NHWC Flax Linen.

Encoder: conv_in → DownEncoderBlock2D per width (resnets, then a stride-2 conv except at the last)
→ mid block (resnet, self-attention, resnet) → GN/SiLU → conv_out to 2·latent channels (mean,
logvar) → quant_conv. Decoder mirrors it after post_quant_conv. Downsampling factor
f = 2**(len(block_out_channels) − 1). Images in [-1, 1]. The defaults are SD-1.x's.
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.models import layers
from jaxdeg.models.ldm.common import Downsample, ResnetBlock, SpatialSelfAttention, Upsample, group_norm


def _blocks(remat):
  res = nn.remat(ResnetBlock) if remat else ResnetBlock
  attn = nn.remat(SpatialSelfAttention) if remat else SpatialSelfAttention
  return res, attn


class MidBlock(nn.Module):
  """diffusers `UNetMidBlock2D` without a time embedding: resnet → attention → resnet."""
  channels: int
  groups: int
  add_attention: bool = True
  remat: bool = False
  dtype: Any = jnp.float32
  attention_impl: Optional[str] = None

  @nn.compact
  def __call__(self, x):
    res, attn = _blocks(self.remat)
    x = res(self.channels, self.groups, 1e-6, self.dtype, name="resnets_0")(x)
    if self.add_attention:
      # diffusers sets attention_head_dim = width here: one head
      x = attn(1, self.groups, 1e-6, self.dtype, self.attention_impl, name="attentions_0")(x)
    return res(self.channels, self.groups, 1e-6, self.dtype, name="resnets_1")(x)


class DownEncoderBlock(nn.Module):
  channels: int
  num_layers: int
  groups: int
  add_downsample: bool
  remat: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    res, _ = _blocks(self.remat)
    for j in range(self.num_layers):
      x = res(self.channels, self.groups, 1e-6, self.dtype, name=f"resnets_{j}")(x)
    if self.add_downsample:
      x = Downsample(self.channels, padding=0, dtype=self.dtype, name="downsamplers_0")(x)
    return x


class UpDecoderBlock(nn.Module):
  channels: int
  num_layers: int
  groups: int
  add_upsample: bool
  remat: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    res, _ = _blocks(self.remat)
    for j in range(self.num_layers):
      x = res(self.channels, self.groups, 1e-6, self.dtype, name=f"resnets_{j}")(x)
    if self.add_upsample:
      x = Upsample(self.channels, dtype=self.dtype, name="upsamplers_0")(x)
    return x


class Encoder(nn.Module):
  block_out_channels: Sequence[int]
  layers_per_block: int
  latent_channels: int
  groups: int
  mid_attention: bool = True
  remat: bool = False
  dtype: Any = jnp.float32
  attention_impl: Optional[str] = None

  @nn.compact
  def __call__(self, x):
    chans = tuple(self.block_out_channels)
    x = layers.Conv(chans[0], (3, 3), padding=1, dtype=self.dtype, name="conv_in")(x)
    for i, c in enumerate(chans):
      x = DownEncoderBlock(c, self.layers_per_block, self.groups, i < len(chans) - 1, self.remat, self.dtype,
                           name=f"down_blocks_{i}")(x)
    x = MidBlock(chans[-1], self.groups, self.mid_attention, self.remat, self.dtype, self.attention_impl,
                 name="mid_block")(x)
    x = nn.silu(group_norm(self.groups, 1e-6, self.dtype, "conv_norm_out")(x))
    return layers.Conv(2 * self.latent_channels, (3, 3), padding=1, dtype=self.dtype, name="conv_out")(x)


class Decoder(nn.Module):
  block_out_channels: Sequence[int]
  layers_per_block: int
  out_channels: int
  groups: int
  mid_attention: bool = True
  remat: bool = False
  dtype: Any = jnp.float32
  attention_impl: Optional[str] = None

  @nn.compact
  def __call__(self, z):
    chans = tuple(reversed(self.block_out_channels))
    x = layers.Conv(chans[0], (3, 3), padding=1, dtype=self.dtype, name="conv_in")(z)
    x = MidBlock(chans[0], self.groups, self.mid_attention, self.remat, self.dtype, self.attention_impl,
                 name="mid_block")(x)
    for i, c in enumerate(chans):
      x = UpDecoderBlock(c, self.layers_per_block + 1, self.groups, i < len(chans) - 1, self.remat, self.dtype,
                         name=f"up_blocks_{i}")(x)
    x = nn.silu(group_norm(self.groups, 1e-6, self.dtype, "conv_norm_out")(x))
    return layers.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype, name="conv_out")(x)


class AutoencoderKL(nn.Module):
  """KL-regularised autoencoder. `encode` → (mean, logvar) of the latent posterior (unscaled);
  `sample` draws from it; `decode` maps an (unscaled) latent back to an image.
  `scaling_factor` converts to/from the diffusion model's latent scale (`scale`/`unscale`)."""
  in_channels: int = 3
  out_channels: int = 3
  block_out_channels: Sequence[int] = (128, 256, 512, 512)
  layers_per_block: int = 2
  latent_channels: int = 4
  norm_num_groups: int = 32
  scaling_factor: float = 0.18215
  mid_attention: bool = True
  use_quant_conv: bool = True
  use_post_quant_conv: bool = True
  remat: bool = False
  dtype: Any = jnp.float32
  attention_impl: Optional[str] = None

  @property
  def downsample_factor(self):
    return 2 ** (len(self.block_out_channels) - 1)

  def setup(self):
    kw = dict(groups=self.norm_num_groups, mid_attention=self.mid_attention, remat=self.remat,
              dtype=self.dtype, attention_impl=self.attention_impl)
    self.encoder = Encoder(self.block_out_channels, self.layers_per_block, self.latent_channels, **kw)
    self.decoder = Decoder(self.block_out_channels, self.layers_per_block, self.out_channels, **kw)
    if self.use_quant_conv:
      self.quant_conv = layers.Conv(2 * self.latent_channels, (1, 1), dtype=self.dtype)
    if self.use_post_quant_conv:
      self.post_quant_conv = layers.Conv(self.latent_channels, (1, 1), dtype=self.dtype)

  def encode(self, x):
    f = self.downsample_factor
    if x.ndim != 4 or x.shape[-1] != self.in_channels or x.shape[1] % f or x.shape[2] % f:
      raise ValueError(f"AutoencoderKL.encode: expected (B, H, W, {self.in_channels}) images with H, W "
                       f"multiples of {f}, got shape {x.shape}")
    moments = self.encoder(x)
    if self.use_quant_conv:
      moments = self.quant_conv(moments)
    mean, logvar = jnp.split(moments.astype(jnp.float32), 2, axis=-1)
    # as diffusers' DiagonalGaussianDistribution
    return mean, jnp.clip(logvar, -30.0, 20.0)

  def sample(self, x, key):
    """One draw from the posterior q(z | x) (unscaled)."""
    mean, logvar = self.encode(x)
    return sample_posterior(mean, logvar, key)

  def decode(self, z):
    if self.use_post_quant_conv:
      z = self.post_quant_conv(z.astype(self.dtype))
    return self.decoder(z).astype(jnp.float32)

  def scale(self, z):
    return z * self.scaling_factor

  def unscale(self, z):
    return z / self.scaling_factor

  def __call__(self, x, key=None):
    """Reconstruction (posterior sample when `key` is given, else the mean), mean, logvar."""
    mean, logvar = self.encode(x)
    z = mean if key is None else sample_posterior(mean, logvar, key)
    return self.decode(z), mean, logvar


def sample_posterior(mean, logvar, key):
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


def kl_divergence(mean, logvar):
  """KL(q ‖ N(0, I)) per example, summed over latent dimensions (as diffusers/LDM)."""
  return 0.5 * jnp.sum(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar, axis=tuple(range(1, mean.ndim)))
