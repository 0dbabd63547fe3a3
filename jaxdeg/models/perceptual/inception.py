"""FID's InceptionV3: pytorch-fid's `InceptionV3` with its default settings (the FID network,
2048-d pool3 features, input resized to 299×299 and mapped from [0, 1] to [-1, 1]).

That is torchvision's inception_v3 trunk with pytorch-fid's patched blocks, which reproduce the
TensorFlow graph the FID was defined with: FIDInceptionA/C and the first E block average-pool
without counting the padding, the second E block max-pools in its pool branch.

NHWC. Every BasicConv2d (conv without bias, BatchNorm eps 1e-3 in eval mode, ReLU) is one
`nn.Conv` with bias: `inception_params` folds the stored BatchNorm into it. Modules are named
after the torch attributes (`Conv2d_1a_3x3`, `Mixed_5b/branch1x1`, ...), so the state-dict key
`Mixed_5b.branch1x1.conv.weight` lands in params['Mixed_5b']['branch1x1']['kernel'].
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxdeg.errors import UserError
from jaxdeg.models.perceptual import weights
from jaxdeg.models.perceptual.weights import PerceptualWeightsError

INPUT_SIZE = 299
FEATURES = 2048
BN_EPS = 1e-3  # torchvision's BasicConv2d


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


def _resize_axis(x, axis, size):
  """torch's F.interpolate(mode='bilinear', align_corners=False, antialias=False) along one axis.

  Same index and weight arithmetic as torch's CPU kernel (a float scale, the source index computed
  in double and rounded to float, clamped at 0; all-float32 index arithmetic is off by up to ~4e-6
  at 512 pixels). As two gathers: jax.image.resize antialiases when shrinking, torch does not."""
  n_in = x.shape[axis]
  if n_in == size:  # torch's weights are exactly (1, 0) there
    return x
  scale = np.float64(np.float32(n_in) / np.float32(size))  # a float, used in double arithmetic
  src = np.maximum(scale * (np.arange(size) + 0.5) - 0.5, 0).astype(np.float32)
  i0 = np.minimum(np.floor(src).astype(np.int32), n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  lam = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
  shape = [1] * x.ndim
  shape[axis] = size
  lam = jnp.asarray(lam.reshape(shape))
  return jnp.take(x, i0, axis=axis) * (1 - lam) + jnp.take(x, i1, axis=axis) * lam


def resize_bilinear(images, size=INPUT_SIZE):
  """(N, H, W, C) -> (N, size, size, C), as torch's bilinear resize without align_corners."""
  return _resize_axis(_resize_axis(images, 2, size), 1, size)  # torch's order: along W, then H


class _Block(nn.Module):
  precision: Any = None

  def conv(self, x, features, kernel, name, stride=1, padding=0):
    """BasicConv2d with its BatchNorm folded in: conv + bias, ReLU (torch's padding per axis)."""
    ph, pw = _pair(padding)
    y = nn.Conv(features, _pair(kernel), strides=_pair(stride), padding=((ph, ph), (pw, pw)),
                precision=self.precision, name=name)(x)
    return nn.relu(y)


def _avg_pool_3x3(x):
  # TensorFlow's average pool, as pytorch-fid patches it in: padded zeros are not counted
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(_Block):
  """FIDInceptionA (Mixed_5b/c/d)."""
  pool_features: int = 32

  @nn.compact
  def __call__(self, x):
    b1 = self.conv(x, 64, 1, "branch1x1")
    b5 = self.conv(self.conv(x, 48, 1, "branch5x5_1"), 64, 5, "branch5x5_2", padding=2)
    b3 = self.conv(x, 64, 1, "branch3x3dbl_1")
    b3 = self.conv(b3, 96, 3, "branch3x3dbl_2", padding=1)
    b3 = self.conv(b3, 96, 3, "branch3x3dbl_3", padding=1)
    bp = self.conv(_avg_pool_3x3(x), self.pool_features, 1, "branch_pool")
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
  """torchvision's InceptionB (Mixed_6a), unpatched."""

  @nn.compact
  def __call__(self, x):
    b3 = self.conv(x, 384, 3, "branch3x3", stride=2)
    bd = self.conv(x, 64, 1, "branch3x3dbl_1")
    bd = self.conv(bd, 96, 3, "branch3x3dbl_2", padding=1)
    bd = self.conv(bd, 96, 3, "branch3x3dbl_3", stride=2)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(_Block):
  """FIDInceptionC (Mixed_6b/c/d/e)."""
  channels_7x7: int = 128

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = self.conv(x, 192, 1, "branch1x1")
    b7 = self.conv(x, c7, 1, "branch7x7_1")
    b7 = self.conv(b7, c7, (1, 7), "branch7x7_2", padding=(0, 3))
    b7 = self.conv(b7, 192, (7, 1), "branch7x7_3", padding=(3, 0))
    bd = self.conv(x, c7, 1, "branch7x7dbl_1")
    bd = self.conv(bd, c7, (7, 1), "branch7x7dbl_2", padding=(3, 0))
    bd = self.conv(bd, c7, (1, 7), "branch7x7dbl_3", padding=(0, 3))
    bd = self.conv(bd, c7, (7, 1), "branch7x7dbl_4", padding=(3, 0))
    bd = self.conv(bd, 192, (1, 7), "branch7x7dbl_5", padding=(0, 3))
    bp = self.conv(_avg_pool_3x3(x), 192, 1, "branch_pool")
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
  """torchvision's InceptionD (Mixed_7a), unpatched."""

  @nn.compact
  def __call__(self, x):
    b3 = self.conv(self.conv(x, 192, 1, "branch3x3_1"), 320, 3, "branch3x3_2", stride=2)
    b7 = self.conv(x, 192, 1, "branch7x7x3_1")
    b7 = self.conv(b7, 192, (1, 7), "branch7x7x3_2", padding=(0, 3))
    b7 = self.conv(b7, 192, (7, 1), "branch7x7x3_3", padding=(3, 0))
    b7 = self.conv(b7, 192, 3, "branch7x7x3_4", stride=2)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(_Block):
  """FIDInceptionE_1 (Mixed_7b, pool='avg') and FIDInceptionE_2 (Mixed_7c, pool='max')."""
  pool: str = "avg"

  @nn.compact
  def __call__(self, x):
    b1 = self.conv(x, 320, 1, "branch1x1")
    b3 = self.conv(x, 384, 1, "branch3x3_1")
    b3 = jnp.concatenate([self.conv(b3, 384, (1, 3), "branch3x3_2a", padding=(0, 1)),
                          self.conv(b3, 384, (3, 1), "branch3x3_2b", padding=(1, 0))], axis=-1)
    bd = self.conv(x, 448, 1, "branch3x3dbl_1")
    bd = self.conv(bd, 384, 3, "branch3x3dbl_2", padding=1)
    bd = jnp.concatenate([self.conv(bd, 384, (1, 3), "branch3x3dbl_3a", padding=(0, 1)),
                          self.conv(bd, 384, (3, 1), "branch3x3dbl_3b", padding=(1, 0))], axis=-1)
    if self.pool == "avg":
      pooled = _avg_pool_3x3(x)
    else:  # the FID graph max-pools here (a quirk of that TensorFlow model; max pooling pads with -inf)
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    bp = self.conv(pooled, 192, 1, "branch_pool")
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(_Block):
  """images (N, H, W, 3) in [0, 1], any H and W -> (N, 2048) pool3 features.

  precision: of the convolutions; None is the backend's default (TF32 on recent GPUs, as
  PyTorch's cuDNN default), 'highest' is exact float32 everywhere."""

  @nn.compact
  def __call__(self, images):
    if images.ndim != 4 or images.shape[-1] != 3:
      raise UserError(f"FID Inception: expected images of shape (N, H, W, 3), got {tuple(images.shape)}")
    x = resize_bilinear(jnp.asarray(images, jnp.float32))
    x = 2 * x - 1
    x = self.conv(x, 32, 3, "Conv2d_1a_3x3", stride=2)
    x = self.conv(x, 32, 3, "Conv2d_2a_3x3")
    x = self.conv(x, 64, 3, "Conv2d_2b_3x3", padding=1)
    x = _max_pool_3x3_s2(x)
    x = self.conv(x, 80, 1, "Conv2d_3b_1x1")
    x = self.conv(x, 192, 3, "Conv2d_4a_3x3")
    x = _max_pool_3x3_s2(x)
    p = self.precision
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = InceptionA(p, pool_features=pool_features, name=name)(x)
    x = InceptionB(p, name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(p, channels_7x7=c7, name=name)(x)
    x = InceptionD(p, name="Mixed_7a")(x)
    x = InceptionE(p, pool="avg", name="Mixed_7b")(x)
    x = InceptionE(p, pool="max", name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d(1) over the 8×8 map


@functools.cache
def _param_shapes():
  # the network resizes every input to 299², so a tiny abstract input traces the full shapes
  variables = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0),
                             jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32))
  return traverse_util.flatten_dict(variables["params"])


def inception_params(path):
  """Flax params of `FIDInceptionV3` from pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`
  (or an `.npz` copy with the same keys), BatchNorm folded into the convolutions.

  Keys per BasicConv2d `<m>` (e.g. `Conv2d_1a_3x3`, `Mixed_5b.branch1x1`): `<m>.conv.weight`
  (O, I, kh, kw) and `<m>.bn.{weight,bias,running_mean,running_var}` (O,). `fc.*` and
  `*.num_batches_tracked` are ignored."""
  state = weights.read_state_dict(path)
  flat = {}
  for names, shape in _param_shapes().items():
    if names[-1] != "kernel":
      continue
    kh, kw, cin, cout = shape.shape
    module = ".".join(names[:-1])
    kernel = weights._take(state, path, f"{module}.conv.weight", (cout, cin, kh, kw)).astype(np.float64)
    gamma, beta, mean, var = (weights._take(state, path, f"{module}.bn.{k}", (cout,)).astype(np.float64)
                              for k in ("weight", "bias", "running_mean", "running_var"))
    if np.any(var < 0):
      raise PerceptualWeightsError(f"{path}: key '{module}.bn.running_var' has negative variances")
    scale = gamma / np.sqrt(var + BN_EPS)
    flat[names] = np.transpose(kernel * scale[:, None, None, None], (2, 3, 1, 0)).astype(np.float32)
    flat[names[:-1] + ("bias",)] = (beta - mean * scale).astype(np.float32)
  return traverse_util.unflatten_dict(flat)
