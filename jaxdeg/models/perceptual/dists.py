"""DISTS (Ding et al. 2020; the official DISTS_pytorch forward pass): structure and texture
similarity of VGG16 features with L2 pooling, weighted per channel by alpha and beta.

Inputs in [0, 1], NHWC; one distance per image (0 for identical images).
"""
import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.models.perceptual.vgg import VGG16Features
from jaxdeg.models.perceptual.weights import DISTS_CHANNELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
C1 = C2 = 1e-6


class DISTS(nn.Module):
  """params: {'vgg': VGG16Features params, 'alpha': (1475,), 'beta': (1475,)}."""

  @nn.compact
  def __call__(self, x, y):
    n = sum(DISTS_CHANNELS)
    alpha = self.param("alpha", nn.initializers.zeros, (n,))
    beta = self.param("beta", nn.initializers.zeros, (n,))
    w_sum = jnp.sum(alpha) + jnp.sum(beta)
    both = jnp.concatenate([x, y], axis=0)  # one trunk call for x and y
    normalised = (both - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    # stage 0 is the raw [0, 1] input, as in the official code
    stages = [both] + VGG16Features(pooling="l2", name="vgg")(normalised)
    texture = structure = 0.0  # the paper's names: alpha weighs texture (means), beta structure
    start = 0
    for features, c in zip(stages, DISTS_CHANNELS):
      a, b = alpha[start:start + c] / w_sum, beta[start:start + c] / w_sum
      start += c
      fx, fy = jnp.split(features, 2, axis=0)
      mx, my = jnp.mean(fx, axis=(1, 2)), jnp.mean(fy, axis=(1, 2))
      texture_similarity = (2 * mx * my + C1) / (mx ** 2 + my ** 2 + C1)
      dx, dy = fx - mx[:, None, None], fy - my[:, None, None]
      vx, vy = jnp.mean(dx * dx, axis=(1, 2)), jnp.mean(dy * dy, axis=(1, 2))
      # centred, where the official code has E[xy] - E[x]E[y]: equal in exact arithmetic, but the
      # official form loses the small variances of smooth images to fp32 cancellation
      cov = jnp.mean(dx * dy, axis=(1, 2))
      structure_similarity = (2 * cov + C2) / (vx + vy + C2)
      texture = texture + texture_similarity @ a
      structure = structure + structure_similarity @ b
    return 1.0 - (texture + structure)
