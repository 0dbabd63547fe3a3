"""LPIPS, VGG variant, v0.1 (Zhang et al. 2018; the official `lpips` package's forward pass).

Inputs in [0, 1] (the official model takes [-1, 1]: converted here), NHWC; one value per image.
"""
import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.models.perceptual.vgg import VGG16Features
from jaxdeg.models.perceptual.weights import LPIPS_CHANNELS

# the official ScalingLayer: (x - shift) / scale on [-1, 1] inputs
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def unit_normalise(features, eps=1e-10):
  """features / (‖features‖₂ over channels + eps), with a finite gradient where the norm is 0
  (the official sqrt has none there, and all-zero ReLU pixels happen)."""
  squared = jnp.sum(features * features, axis=-1, keepdims=True)
  positive = squared > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
  return features / (norm + eps)


class LPIPS(nn.Module):
  """params: {'vgg': VGG16Features params, 'lin0'..'lin4': (C,) channel weights of the 1×1 heads}."""

  @nn.compact
  def __call__(self, x, y):
    def scaled(images):
      return ((images * 2.0 - 1.0) - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)

    vgg = VGG16Features(pooling="max", name="vgg")
    both = vgg(jnp.concatenate([scaled(x), scaled(y)], axis=0))  # one trunk call for x and y
    total = 0.0
    for k, (features, c) in enumerate(zip(both, LPIPS_CHANNELS)):
      fx, fy = jnp.split(features, 2, axis=0)
      weight = self.param(f"lin{k}", nn.initializers.zeros, (c,))
      diff = (unit_normalise(fx) - unit_normalise(fy)) ** 2
      total = total + jnp.mean(diff @ weight, axis=(1, 2))
    return total
