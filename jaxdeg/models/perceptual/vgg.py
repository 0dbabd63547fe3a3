"""VGG16's `features` trunk (torchvision layout), returning the activations LPIPS and DISTS tap.

NHWC. The 13 3×3 convolutions are named `features_<i>` after their torchvision index, so the
torchvision state dict maps onto them one to one (`weights.vgg16_params`).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.models.perceptual.weights import VGG16_CONVS

# conv indices of each stage; a pool comes before every stage but the first
STAGES = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
_OUT_CHANNELS = {index: cout for index, _, cout in VGG16_CONVS}


def max_pool(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


def _blur_stride2(x, axis, taps):
  """Zero-padded (1 each side) 3-tap filter along `axis` with stride 2, as shifted slices: on
  XLA:CPU these and their gradient run ~30× faster than a depthwise convolution."""
  n_out = (x.shape[axis] - 1) // 2 + 1
  padded = jnp.pad(x, [(1, 1) if a == axis else (0, 0) for a in range(x.ndim)])
  return sum(float(t) * jax.lax.slice_in_dim(padded, k, k + 2 * (n_out - 1) + 1, 2, axis)
             for k, t in enumerate(taps))


def l2_pool(x):
  """DISTS's L2pooling: sqrt(blur(x²) + 1e-12), stride 2, zero padding 1. Its 3×3 filter is the
  normalised outer product of np.hanning(5)[1:-1] with itself, so the blur is separable."""
  a = np.hanning(5)[1:-1]
  taps = a / a.sum()
  return jnp.sqrt(_blur_stride2(_blur_stride2(x * x, 1, taps), 2, taps) + 1e-12)


class VGG16Features(nn.Module):
  """The five ReLU outputs relu1_2 … relu5_3 of VGG16 (the last max-pool is never used).

  pooling: 'max' (VGG16 itself, as LPIPS uses it) or 'l2' (DISTS's L2 pooling)."""
  pooling: str = "max"

  @nn.compact
  def __call__(self, x):
    pool = {"max": max_pool, "l2": l2_pool}[self.pooling]
    taps = []
    for s, stage in enumerate(STAGES):
      if s:
        x = pool(x)
      for index in stage:
        x = nn.relu(nn.Conv(_OUT_CHANNELS[index], (3, 3), padding=((1, 1), (1, 1)), name=f"features_{index}")(x))
      taps.append(x)
    return taps
