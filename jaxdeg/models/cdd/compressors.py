"""The two compressors that squeeze content out of the degradation embeddings.

Penalising the rate Σ_i H(e_i) = H(e) + KL(p(e) ‖ Π p(e_i)) makes an embedding shed what it does
not need and decorrelates its dimensions. Both compressors return
(reconstructed embedding, rate, auxiliary loss); the local one has no auxiliary loss (0).

Random quantisation noise is drawn from the 'quantize' rng stream while training.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.errors import UserError
from jaxdeg.models import layers
from jaxdeg.models.cdd.entropy import GDN, IGDN, BitEstimator, EntropyBottleneck, global_rate, local_rate
from jaxdeg.models.cdd.ops import torch_padding, torch_transpose_padding


class ResidualMLP(nn.Module):
  """x + Linear(C → mid) → ReLU → Linear(mid → C), `blocks` times (the official CompressorHeadMLP)."""
  blocks: int = 2
  mid: int = 64

  @nn.compact
  def __call__(self, x):
    for i in range(self.blocks):
      h = nn.relu(layers.Dense(self.mid, name=f"block{i}_in")(x))
      x = x + layers.Dense(x.shape[-1], name=f"block{i}_out")(h)
    return x


class GlobalCompressor(nn.Module):
  """[B, C] embedding → residual-MLP head → factorised bottleneck → residual-MLP tail.

  Rate: bits per sample (−Σ log2 p over channels), batch mean."""
  channels: int = 256
  mid: int = 64  # official: channels // 4
  head_blocks: int = 2
  tail_blocks: int = 2

  @nn.compact
  def __call__(self, e, train: bool = False):
    e = ResidualMLP(self.head_blocks, self.mid, name="head")(e)
    bottleneck = EntropyBottleneck(self.channels, name="bottleneck")
    e, likelihoods = bottleneck(e, train)
    e = ResidualMLP(self.tail_blocks, self.mid, name="tail")(e)
    return e, global_rate(likelihoods), bottleneck.aux_loss()


class LocalCompressor(nn.Module):
  """[B, H', W', C] map → ICLR'17-style codec at 1/16 of the map (1/32 of the image) → map in [0, 1].

  Analysis: Conv9×9 s4 → GDN → Conv5×5 s2 → GDN → Conv5×5 s2 (no bias) to `latent` channels;
  synthesis: ConvT5×5 s2 → IGDN → ConvT5×5 s2 → IGDN → ConvT9×9 s4 → clamp [0, 1].
  Rate: Σ clamp(−log2 p, 0, 50) / (B·H'·W') with p from the BitEstimator CDF. H', W' must be
  multiples of 16."""
  latent: int = 64

  @nn.compact
  def __call__(self, e, train: bool = False):
    b, h, w, c = e.shape
    if h % 16 or w % 16:
      raise UserError(f"local compressor: the local embedding is {h}×{w}; it must be a multiple of 16 "
                      f"(images a multiple of 32)")
    n = self.latent
    conv = lambda f, k, s, p, name, bias=True: layers.Conv(f, (k, k), strides=(s, s), padding=torch_padding(p),
                                                          use_bias=bias, name=name)
    z = GDN(n, name="gdn1")(conv(n, 9, 4, 4, "conv1")(e))
    z = GDN(n, name="gdn2")(conv(n, 5, 2, 2, "conv2")(z))
    z = conv(n, 5, 2, 2, "conv3", bias=False)(z)
    if train:
      z = z + jax.random.uniform(self.make_rng("quantize"), z.shape, z.dtype, -0.5, 0.5)
    else:
      z = jnp.round(z)
    deconv = lambda f, k, s, p, op, name: layers.ConvTranspose(f, (k, k), strides=(s, s),
                                                               padding=torch_transpose_padding(k, p, op), name=name)
    r = IGDN(n, name="igdn1")(deconv(n, 5, 2, 2, 1, "deconv1")(z))
    r = IGDN(n, name="igdn2")(deconv(n, 5, 2, 2, 1, "deconv2")(r))
    r = jnp.clip(deconv(c, 9, 4, 4, 3, "deconv3")(r), 0.0, 1.0)
    cdf = BitEstimator(name="bit_estimator")
    probabilities = cdf(z + 0.5) - cdf(z - 0.5)
    return r, local_rate(probabilities, e.shape), jnp.zeros((), e.dtype)


__all__ = ["ResidualMLP", "GlobalCompressor", "LocalCompressor"]
