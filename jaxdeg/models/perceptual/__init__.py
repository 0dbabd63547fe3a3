"""Perceptual distances in JAX from the user's local weight files: LPIPS (VGG, v0.1) and DISTS,
and the FID network's features.

  lpips = perceptual.load_lpips("vgg16-397923af.pth", "lpips/weights/v0.1/vgg.pth")
  dists = perceptual.load_dists("vgg16-397923af.pth", "DISTS_pytorch/weights.pt")
  lpips(x, y), dists(x, y)    # x, y: (B, H, W, 3) in [0, 1] -> (B,)
  inception = perceptual.load_inception("pt_inception-2015-12-05-6726825d.pth")
  inception(x)                # (B, H, W, 3) in [0, 1] -> (B, 2048), for jaxdeg.metrics.fid

Nothing is downloaded: the files are torchvision's vgg16 state dict, the lpips package's linear
heads, DISTS_pytorch's alpha/beta (`weights.py` has the layouts) and pytorch-fid's Inception
(`inception.py`); `.npz` copies need no torch.
The callables are jittable and differentiable in x and y. Called inside another jitted function
the weights become constants of that program; `apply(params, x, y)` takes them as an argument.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.models.perceptual import weights
from jaxdeg.models.perceptual.dists import DISTS
from jaxdeg.models.perceptual.inception import FIDInceptionV3, inception_params
from jaxdeg.models.perceptual.lpips import LPIPS
from jaxdeg.models.perceptual.vgg import VGG16Features
from jaxdeg.models.perceptual.weights import PerceptualWeightsError

__all__ = ["DISTS", "FIDInceptionV3", "FeatureExtractor", "LPIPS", "PerceptualDistance", "PerceptualWeightsError",
           "VGG16Features", "load_dists", "load_inception", "load_lpips", "weights"]


@dataclasses.dataclass(frozen=True, eq=False)
class PerceptualDistance:
  """A module with its frozen params: `self(x, y)` -> (B,) distances of images in [0, 1]."""
  module: nn.Module
  params: Any

  def __post_init__(self):
    object.__setattr__(self, "_jitted_apply", jax.jit(self.apply))  # one compile per input shape

  def apply(self, params, x, y):
    return self.module.apply({"params": params}, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))

  def __call__(self, x, y):
    return self._jitted_apply(self.params, x, y)


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureExtractor:
  """A module with its frozen params: `self(images)` -> (B, D) features of images in [0, 1]."""
  module: nn.Module
  params: Any

  def __post_init__(self):
    object.__setattr__(self, "_jitted_apply", jax.jit(self.apply))  # one compile per input shape

  def apply(self, params, images):
    return self.module.apply({"params": params}, jnp.asarray(images, jnp.float32))

  def __call__(self, images):
    return self._jitted_apply(self.params, images)


def _vgg16(vgg):
  """VGG16 params from a weight file, or params already read (LPIPS and DISTS can share them)."""
  return vgg if isinstance(vgg, dict) else weights.vgg16_params(vgg)


def load_lpips(vgg, lin_path):
  """LPIPS (VGG, v0.1) from torchvision's vgg16 weights (a path, or `weights.vgg16_params` of
  one) and the lpips package's v0.1/vgg.pth."""
  params = {"vgg": _vgg16(vgg)}
  params.update({f"lin{k}": w for k, w in enumerate(weights.lpips_linear_weights(lin_path))})
  return PerceptualDistance(LPIPS(), jax.tree.map(jnp.asarray, params))


def load_dists(vgg, alpha_beta_path):
  """DISTS from torchvision's vgg16 weights (as for `load_lpips`) and DISTS_pytorch's weights.pt."""
  alpha, beta = weights.dists_alpha_beta(alpha_beta_path)
  params = {"vgg": _vgg16(vgg), "alpha": alpha, "beta": beta}
  return PerceptualDistance(DISTS(), jax.tree.map(jnp.asarray, params))


def load_inception(path, precision=None):
  """FID's InceptionV3 pool3 features, (B, H, W, 3) in [0, 1] -> (B, 2048), as pytorch-fid's
  `InceptionV3()` computes them (bilinear resize to 299×299, then [-1, 1]).

  path: pytorch-fid's weight file `pt_inception-2015-12-05-6726825d.pth` (the port of
  TensorFlow's inception-2015-12-05 graph that FID is defined with), or an `.npz` copy of it.
  Not torchvision's inception_v3 weights: those give other features and other FIDs.
  precision: of the convolutions (see `FIDInceptionV3`). A batch of a new shape compiles again:
  pad a short last batch to the usual size and drop the padded rows of the features."""
  params = jax.tree.map(jnp.asarray, inception_params(path))
  return FeatureExtractor(FIDInceptionV3(precision=precision), params)
