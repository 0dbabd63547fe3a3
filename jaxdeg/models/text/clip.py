"""CLIP's text transformer (transformers' `CLIPTextTransformer`): the text encoder of Stable
Diffusion 1.x and GenDeg. Token + position embeddings, pre-LN blocks with causal self-attention
and a quick-GELU MLP, a final LayerNorm; the output is the last hidden state (B, L, width).
Defaults are ViT-L/14's text tower.

Module names are transformers' state-dict keys below `text_model.` with `.N` folded into the name
before it (`encoder.layers.3.mlp.fc1.weight` → `encoder/layers_3/mlp/fc1/kernel`), so import
(`jaxdeg.interop.clip_text`) is a rename plus transposes.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.models import layers


def quick_gelu(x):
  return x * jax.nn.sigmoid(1.702 * x)


def _layer_norm(eps, dtype, name):
  # two-pass variance, as torch's LayerNorm: fp32 parity with transformers at 1e-5
  return layers.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=dtype, name=name)


class _Embed(nn.Module):
  """A (rows, width) table with the width logically partitioned; gathers rows."""
  rows: int
  width: int

  @nn.compact
  def __call__(self, ids):
    table = layers.param(self, "embedding", nn.initializers.normal(0.02), (self.rows, self.width), (None, "out"))
    return jnp.take(table, ids, axis=0)


class CLIPAttention(nn.Module):
  width: int
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, n, c = x.shape
    if c % self.heads:
      raise ValueError(f"CLIPAttention: width {c} is not divisible by {self.heads} heads")
    split = lambda t: t.reshape(b, n, self.heads, c // self.heads)
    q, k, v = (split(layers.Dense(self.width, dtype=self.dtype, name=f"{p}_proj")(x)) for p in "qkv")
    out = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    return layers.Dense(self.width, dtype=self.dtype, name="out_proj")(out.reshape(b, n, c))


class CLIPMlp(nn.Module):
  width: int
  mlp_width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = quick_gelu(layers.Dense(self.mlp_width, dtype=self.dtype, name="fc1")(x))
    return layers.Dense(self.width, dtype=self.dtype, name="fc2")(h)


class CLIPLayer(nn.Module):
  width: int
  heads: int
  mlp_width: int
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    norm = lambda name: _layer_norm(self.eps, self.dtype, name)
    x = x + CLIPAttention(self.width, self.heads, self.dtype, name="self_attn")(norm("layer_norm1")(x))
    return x + CLIPMlp(self.width, self.mlp_width, self.dtype, name="mlp")(norm("layer_norm2")(x))


class _Encoder(nn.Module):
  width: int
  num_layers: int
  heads: int
  mlp_width: int
  eps: float
  dtype: Any

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_layers):
      x = CLIPLayer(self.width, self.heads, self.mlp_width, self.eps, self.dtype, name=f"layers_{i}")(x)
    return x


class _Embeddings(nn.Module):
  vocab_size: int
  max_positions: int
  width: int

  @nn.compact
  def __call__(self, ids):
    n = ids.shape[-1]
    tokens = _Embed(self.vocab_size, self.width, name="token_embedding")(jnp.asarray(ids, jnp.int32))
    return tokens + _Embed(self.max_positions, self.width, name="position_embedding")(jnp.arange(n))


class CLIPTextTransformer(nn.Module):
  """token ids (B, L ≤ max_positions) → last hidden state (B, L, width)."""
  vocab_size: int = 49408
  max_positions: int = 77
  width: int = 768
  num_layers: int = 12
  heads: int = 12
  mlp_width: int = 3072
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids):
    n = ids.shape[-1]
    if n > self.max_positions:
      raise ValueError(f"CLIPTextTransformer: {n} tokens, at most {self.max_positions} positions")
    x = _Embeddings(self.vocab_size, self.max_positions, self.width, name="embeddings")(ids)
    x = _Encoder(self.width, self.num_layers, self.heads, self.mlp_width, self.eps, self.dtype, name="encoder")(
        x.astype(self.dtype))
    return _layer_norm(self.eps, self.dtype, "final_layer_norm")(x)
