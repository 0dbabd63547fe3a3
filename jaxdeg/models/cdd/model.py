"""The universal degradation model: encoders + compressors + generator in one Linen module.

    emb = model.apply(v, y, train, method=DegradationModel.embed)      # degradation of y
    y_hat = model.apply(v, x, emb, method=DegradationModel.transfer,
                        rngs={'noise': key})                          # ... put on clean x
    y_hat, emb = model.apply(v, x, y, train=True, rngs={'noise': k1, 'quantize': k2},
                             mutable=['batch_stats'])                 # both, for training

rng streams: 'noise' (the generator's z, every call) and 'quantize' (the compressors' uniform
noise, training only). BatchNorm statistics (encoders) are in 'batch_stats'.

Ablation switches (the paper's ablations):
- `compress_global=False` / `compress_local=False`: that compressor is bypassed (and absent), its
  rate is 0; the other is untouched. The official trainer switches them separately
  (`netCprs.enabled`, `netCprs_loc.enabled`); both off is the paper's no-compression ablation.
- `use_ida=False`: IDA-SFT layers lose their IDA term.
- `use_iden=False`: no local encoder (nor local compressor); the condition is global only.
The MoCo key encoder is not part of this module: it is a second copy of the `global_encoder`
variables, applied with `method=DegradationModel.encode_global` (see `jaxdeg.models.cdd.moco`).
"""
from typing import Any, Optional

import flax
import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.models.cdd.compressors import GlobalCompressor, LocalCompressor
from jaxdeg.models.cdd.generator import Generator
from jaxdeg.models.cdd.hden import HDEN
from jaxdeg.models.cdd.iden import IDEN


@flax.struct.dataclass
class Embeddings:
  """The degradation of an image, as the generator consumes it."""
  global_embedding: Any            # ê_g [B, global_dim] (after the compressor)
  local_embedding: Optional[Any]   # ê_l [B, H/2, W/2, local_dim] (after the compressor), or None
  global_code: Any                 # e_g before the compressor: the MoCo query
  rate_global: Any                 # bits per sample, batch mean (0 without the global compressor)
  rate_local: Any                  # bits per embedding pixel (0 without the local compressor or IDEN)
  aux_loss: Any                    # entropy-bottleneck quantile loss (0 without the global compressor)


class DegradationModel(nn.Module):
  global_dim: int = 256
  local_dim: int = 4
  encoder_dim: int = 256
  encoder_kernel: int = 3
  local_latent: int = 64
  generator_width: int = 64
  generator_blocks: tuple = (4, 3, 2, 3, 4)
  cond_dim: int = 8
  compress_global: bool = True
  compress_local: bool = True
  use_ida: bool = True
  use_iden: bool = True
  official_input_scaling: bool = False  # only for imported official weights (they expect 2x − 1)

  def setup(self):
    self.global_encoder = HDEN(self.encoder_dim, self.global_dim, self.encoder_kernel)
    self.generator = Generator(self.generator_width, self.cond_dim, self.generator_blocks, use_ida=self.use_ida,
                               official_input_scaling=self.official_input_scaling)
    if self.compress_global:
      self.global_compressor = GlobalCompressor(self.global_dim, self.global_dim // 4)
    if self.use_iden:
      self.local_encoder = IDEN(self.encoder_dim, self.local_dim, self.encoder_kernel)
      if self.compress_local:
        self.local_compressor = LocalCompressor(self.local_latent)

  def encode_global(self, y, train: bool = False):
    """e_g before compression (the MoCo query, or the key with the key encoder's variables)."""
    return self.global_encoder(y, train)

  def embed(self, y, train: bool = False) -> Embeddings:
    """Degraded image y [B, H, W, 3] in [-1, 1] → its degradation embeddings and their rates."""
    zero = jnp.zeros((), jnp.float32)
    code = self.global_encoder(y, train)
    e_g, rate_g, aux = code, zero, zero
    if self.compress_global:
      e_g, rate_g, aux = self.global_compressor(code, train)
    e_l, rate_l = None, zero
    if self.use_iden:
      e_l = self.local_encoder(y, train)
      if self.compress_local:
        e_l, rate_l, _ = self.local_compressor(e_l, train)
    return Embeddings(e_g, e_l, code, rate_g, rate_l, aux)

  def transfer(self, x, embeddings: Embeddings):
    """Put the degradation described by `embeddings` on clean x [B, H, W, 3] in [-1, 1]."""
    return self.generator(x, embeddings.global_embedding, embeddings.local_embedding)

  def __call__(self, x, y, train: bool = False):
    """(ŷ, embeddings of y): x carrying y's degradation."""
    embeddings = self.embed(y, train)
    return self.transfer(x, embeddings), embeddings


__all__ = ["DegradationModel", "Embeddings"]
