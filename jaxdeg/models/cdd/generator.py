"""The degradation generator f̂: a U-Net of SFT residual blocks with IDA-SFT layers (the official
`VUNet` inside `BasicWrapper`), NHWC.

One condition map conditions every layer: [local embedding ‖ global embedding broadcast over the
local map's grid (H/2 × W/2)] → 3×3 conv (bias) → 8 channels → ReLU → 3×3 conv. Each IDA-SFT
layer resizes it (bilinear, align_corners=True) to its feature size and to half of it, and computes

    out = x·(1 + γ(c)) + β(c ‖ z) + IDA(x, c↓2),

γ and β being two 1×1 convs of width (8 + C)/4, the second pre-activated; z is a fresh N(0, 1)
channel drawn on every call from the 'noise' rng stream (the model's only randomness:
`apply(..., rngs={'noise': key})`). Each drawn z is also sown into the 'intermediates' collection
(when it is mutable), so a reference implementation can be fed the same noise.

Widths 64/128/256, residual blocks 4, 3, 2 (bottom), 3, 4; 4×4 stride-2 down convs, 4×4 stride-2
transposed up convs, skips concatenated then fused by a 3×3 conv, a 1×1 output conv, no global
residual. Convs carry no bias and are pre-activated (activation → conv) with LeakyReLU(0.01),
except the first conv and the down/up convs (no activation) and the last block of the top decoder
stage, which uses ReLU as the official model does.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.errors import UserError
from jaxdeg.models import layers
from jaxdeg.models.cdd.ops import activation, resize_bilinear_align_corners, torch_padding, torch_transpose_padding


def pre_act_conv(x, features, kernel, act, name, stride=1, padding=None):
  """activation → conv without bias; padding as the official `Conv2d` wrapper chooses it."""
  if padding is None:
    padding = kernel // 2 - 1 if stride == 2 and kernel % 2 == 0 else (kernel - 1) // 2
  return layers.Conv(features, (kernel, kernel), strides=(stride, stride), padding=torch_padding(padding),
                     use_bias=False, name=name)(activation(act)(x))


class IDA(nn.Module):
  """Inhomogeneous degradation-aware conv: the feature map, downsampled, gated by the
  condition map, upsampled back. mid = (C + cond)/2.

  m = ConvT2×2 s2(c↓2) → LeakyReLU(0.1) → Conv3×3 s2;  f = Conv3×3 s2(x);
  out = ConvT2×2 s2(m ⊙ f), the only one with a bias."""

  @nn.compact
  def __call__(self, x, cond_half):
    c = x.shape[-1]
    mid = (c + cond_half.shape[-1]) // 2
    down = lambda f, name: layers.Conv(f, (3, 3), strides=(2, 2), padding=torch_padding(1), use_bias=False, name=name)
    m = layers.ConvTranspose(mid, (2, 2), strides=(2, 2), padding=torch_transpose_padding(2, 0), use_bias=False,
                             name="map_up")(cond_half)
    m = down(mid, "map_down")(activation("lrelu0.1")(m))
    f = down(mid, "feature_down")(x)
    return layers.ConvTranspose(c, (2, 2), strides=(2, 2), padding=torch_transpose_padding(2, 0), name="up")(m * f)


class IDASFT(nn.Module):
  """IDA-SFT layer: spatial feature transform by the condition map, plus a noise-driven shift and IDA."""
  act: str = "lrelu"
  reduction: int = 4
  use_ida: bool = True

  @nn.compact
  def __call__(self, x, cond):
    b, h, w, c = x.shape
    cond_dim = cond.shape[-1]
    reduced = (cond_dim + c) // self.reduction
    cond_full = resize_bilinear_align_corners(cond, (h, w))
    one_by_one = lambda t, f, act, name: pre_act_conv(t, f, 1, act, name)
    gamma = one_by_one(one_by_one(cond_full, reduced, None, "gamma_in"), c, self.act, "gamma_out")
    z = jax.random.normal(self.make_rng("noise"), (b, h, w, 1), x.dtype)
    self.sow("intermediates", "noise", z)
    beta_in = jnp.concatenate([cond_full, z], axis=-1)
    beta = one_by_one(one_by_one(beta_in, reduced, None, "beta_in"), c, self.act, "beta_out")
    out = x * (1 + gamma) + beta
    if self.use_ida:
      out = out + IDA(name="ida")(x, resize_bilinear_align_corners(cond, (h // 2, w // 2)))
    return out


class SFTResBlock(nn.Module):
  """y = sft1(x) → conv3×3 → sft2 → conv3×3; return x + y (all pre-activation with `act`)."""
  act: str = "lrelu"
  use_ida: bool = True

  @nn.compact
  def __call__(self, x, cond):
    c = x.shape[-1]
    y = IDASFT(self.act, use_ida=self.use_ida, name="sft1")(x, cond)
    y = pre_act_conv(y, c, 3, self.act, "conv1")
    y = IDASFT(self.act, use_ida=self.use_ida, name="sft2")(y, cond)
    y = pre_act_conv(y, c, 3, self.act, "conv2")
    return x + y


class Generator(nn.Module):
  """ŷ = f̂(x, ê_g, ê_l, z): clean image [B, H, W, 3] in [-1, 1] + embeddings → degraded image.

  `local_embedding` [B, H'/2, W'/2, C_l] may come from another image (any size: the condition map
  is resized to every layer); None means no local encoder (the condition is the broadcast global
  embedding on x's half-resolution grid). H and W must be multiples of 8 (two stride-2 stages, and
  IDA halves the coarsest one). `official_input_scaling` feeds 2x − 1 as the official code does;
  only for imported official weights."""
  width: int = 64
  cond_dim: int = 8
  blocks: tuple = (4, 3, 2, 3, 4)  # top encoder, middle encoder, bottom, middle decoder, top decoder
  use_ida: bool = True
  out_channels: int = 3
  official_input_scaling: bool = False

  @nn.compact
  def __call__(self, x, global_embedding, local_embedding=None):
    b, h, w, _ = x.shape
    if h % 8 or w % 8:
      raise UserError(f"generator: image is {h}×{w}; height and width must be multiples of 8")
    cond = self.condition(global_embedding, local_embedding, (h // 2, w // 2))
    if self.official_input_scaling:
      x = x * 2 - 1
    k1, k2, k3 = self.width, self.width * 2, self.width * 4
    n_enc1, n_enc2, n_mid, n_dec2, n_dec1 = self.blocks

    def stage(y, n, prefix, last_act="lrelu"):
      for i in range(n):
        y = SFTResBlock(last_act if i == n - 1 else "lrelu", self.use_ida, name=f"{prefix}_{i}")(y, cond)
      return y

    y = pre_act_conv(x, k1, 3, None, "conv_first")
    y = skip1 = stage(y, n_enc1, "enc1")
    y = skip2 = stage(pre_act_conv(y, k2, 4, None, "down1", stride=2), n_enc2, "enc2")
    y = stage(pre_act_conv(y, k3, 4, None, "down2", stride=2), n_mid, "mid")
    up = lambda t, f, name: layers.ConvTranspose(f, (4, 4), strides=(2, 2), padding=torch_transpose_padding(4, 1),
                                                 use_bias=False, name=name)(t)
    y = pre_act_conv(jnp.concatenate([up(y, k2, "up2"), skip2], axis=-1), k2, 3, "lrelu", "skip2")
    y = stage(y, n_dec2, "dec2")
    y = pre_act_conv(jnp.concatenate([up(y, k1, "up1"), skip1], axis=-1), k1, 3, "lrelu", "skip1")
    y = stage(y, n_dec1, "dec1", last_act="relu")
    return pre_act_conv(y, self.out_channels, 1, "lrelu", "conv_out")

  def condition(self, global_embedding, local_embedding, default_size):
    """The condition map [B, H', W', cond_dim] shared by every IDA-SFT layer."""
    if local_embedding is None:
      size, parts = default_size, []
    else:
      size, parts = local_embedding.shape[1:3], [local_embedding]
    g = jnp.broadcast_to(global_embedding[:, None, None, :], (global_embedding.shape[0],) + tuple(size)
                         + (global_embedding.shape[-1],))
    c = layers.Conv(self.cond_dim, (3, 3), padding=torch_padding(1), name="condition_in")(
        jnp.concatenate(parts + [g], axis=-1))
    return pre_act_conv(c, self.cond_dim, 3, "relu", "condition_head")


__all__ = ["IDA", "IDASFT", "SFTResBlock", "Generator"]
