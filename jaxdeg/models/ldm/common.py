"""Building blocks shared by the Stable Diffusion VAE and UNet, laid out as diffusers' modules
(parameter names match diffusers' state-dict keys with `.N.` written `_N`, so weight import is a
rename plus a transpose). NHWC throughout.
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.models import layers


def group_norm(groups, eps, dtype, name):
  # two-pass variance, as torch's GroupNorm: keeps fp32 parity with diffusers at 1e-5
  return layers.GroupNorm(num_groups=groups, epsilon=eps, use_fast_variance=False, dtype=dtype, name=name)


def resize_nearest(x, size):
  """Nearest-neighbour resize of NHWC `x` to `size` = (H, W), indexing as torch's
  `F.interpolate(mode='nearest')` (src = floor(dst · in / out)), so odd sizes match diffusers."""
  h, w = x.shape[1:3]
  rows = (jnp.arange(size[0]) * h) // size[0]
  cols = (jnp.arange(size[1]) * w) // size[1]
  return x[:, rows][:, :, cols]


def attention(q, k, v, heads, implementation=None):
  """Multi-head scaled dot-product attention over (B, N, C) tokens; softmax in float32.

  On CPU (no `implementation` asked for) the heads are moved ahead of the tokens, so both products
  are plain batched matmuls over (B, heads) (with the heads behind the tokens XLA:CPU transposed
  inside each product: the GenDeg UNet's forward at 16² latents, batch 6, 2 cores, 196 → 160 ms),
  and the softmax is normalised after the product with the values: the division touches the
  (heads, T, H) output instead of the (heads, T, S) scores (165 → 141 ms). Elsewhere
  jax.nn.dot_product_attention (cuDNN's or XLA's)."""
  b, n, c = q.shape
  split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, t.shape[2] // heads)
  if implementation is None and jax.default_backend() == "cpu":
    q, k, v = (jnp.transpose(split(t), (0, 2, 1, 3)) for t in (q, k, v))  # (B, heads, N, H)
    scores = jnp.einsum("bnth,bnsh->bnts", q * (q.shape[-1] ** -0.5), k, preferred_element_type=jnp.float32)
    weights = jnp.exp(scores - jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True)))
    total = jnp.sum(weights, axis=-1, keepdims=True)
    out = jnp.einsum("bnts,bnsh->bnth", weights.astype(v.dtype), v) / total.astype(v.dtype)
    out = jnp.transpose(out, (0, 2, 1, 3))
  else:
    out = jax.nn.dot_product_attention(split(q), split(k), split(v), implementation=implementation)
  return out.reshape(b, n, c)


class ResnetBlock(nn.Module):
  """diffusers `ResnetBlock2D` (time_embedding_norm 'default'): GN → SiLU → conv → (+ temb) →
  GN → SiLU → conv, plus a 1×1 `conv_shortcut` when the width changes."""
  out_channels: int
  groups: int = 32
  eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, temb=None):
    h = nn.silu(group_norm(self.groups, self.eps, self.dtype, "norm1")(x))
    h = layers.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype, name="conv1")(h)
    if temb is not None:
      t = layers.Dense(self.out_channels, dtype=self.dtype, name="time_emb_proj")(nn.silu(temb))
      h = h + t[:, None, None, :]
    h = nn.silu(group_norm(self.groups, self.eps, self.dtype, "norm2")(h))
    h = layers.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype, name="conv2")(h)
    if x.shape[-1] != self.out_channels:
      x = layers.Conv(self.out_channels, (1, 1), dtype=self.dtype, name="conv_shortcut")(x)
    return x + h


class Downsample(nn.Module):
  """Stride-2 3×3 conv. `padding=1` (UNet) pads both sides; `padding=0` (VAE encoder) pads only
  bottom/right by one, as diffusers' `Downsample2D`."""
  channels: int
  padding: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    pad = ((1, 1), (1, 1)) if self.padding == 1 else ((0, 1), (0, 1))
    return layers.Conv(self.channels, (3, 3), strides=(2, 2), padding=pad, dtype=self.dtype, name="conv")(x)


class Upsample(nn.Module):
  """Nearest ×2 (or to `size`) then a 3×3 conv."""
  channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, size: Optional[tuple] = None):
    size = size or (2 * x.shape[1], 2 * x.shape[2])
    x = resize_nearest(x, size)
    return layers.Conv(self.channels, (3, 3), padding=1, dtype=self.dtype, name="conv")(x)


class SpatialSelfAttention(nn.Module):
  """The VAE's mid-block attention (diffusers `Attention` with group_norm, biased projections,
  residual connection), over all H·W positions."""
  heads: int = 1
  groups: int = 32
  eps: float = 1e-6
  dtype: Any = jnp.float32
  implementation: Optional[str] = None

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    t = group_norm(self.groups, self.eps, self.dtype, "group_norm")(x).reshape(b, h * w, c)
    q, k, v = (layers.Dense(c, dtype=self.dtype, name=n)(t) for n in ("to_q", "to_k", "to_v"))
    out = attention(q, k, v, self.heads, self.implementation)
    out = layers.Dense(c, dtype=self.dtype, name="to_out_0")(out)
    return x + out.reshape(b, h, w, c)
