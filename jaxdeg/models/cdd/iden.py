"""IDEN, the local (inhomogeneous) degradation encoder e_l (the official `LPEL`), NHWC.

A spatial map at half the image resolution: the long-range branch convolves at stride s = (k-1)/2,
goes back to full resolution with a k×k transposed conv and average-pools to H/2 (cropped to the
short branch, since the transposed conv may overshoot by less than s); the short-range branch is
HDEN's. A 1×1-conv tail with a sigmoid gives `out_dim` channels in [0, 1].
"""
import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.models import layers
from jaxdeg.models.cdd.hden import long_range_stem, run_blocks, short_range_specs
from jaxdeg.models.cdd.ops import activation, avg_pool2, torch_transpose_padding


class IDEN(nn.Module):
  """Local degradation encoder: image [B, H, W, 3] → map [B, H/2, W/2, out_dim] in [0, 1]."""
  dim: int = 256
  out_dim: int = 4
  kernel: int = 3

  @nn.compact
  def __call__(self, y, train: bool = False):
    d, k = self.dim, self.kernel
    f, _, s, _ = long_range_stem(d, k)
    # padding s//2 guarantees the transposed conv covers the whole image (it may overshoot)
    long_specs = ((f, k, s, s // 2), (d // 4, 3, 1, 1), (d // 2, 3, 1, 1), (d // 2, 3, 1, 1))
    x_long = run_blocks(y, long_specs, "long_range", train)
    x_long = layers.ConvTranspose(d, (k, k), strides=(s, s), padding=torch_transpose_padding(k, 0),
                                  name="long_range_up")(x_long)
    x_long = avg_pool2(x_long)
    x_short = run_blocks(y, short_range_specs(d), "short_range", train)
    h, w = x_short.shape[1:3]
    x_long = x_long[:, :h, :w]
    fea = jnp.concatenate([x_long, x_short], axis=-1)
    fea = activation("lrelu0.1")(layers.Conv(d, (1, 1), name="tail_in")(fea))
    return nn.sigmoid(layers.Conv(self.out_dim, (1, 1), name="tail_out")(fea))


__all__ = ["IDEN"]
