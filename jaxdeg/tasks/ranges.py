"""The one mapping between image values in [0, 1] and the models' [-1, 1] (both systems' networks
work in [-1, 1], as SD's VAE and the official universal degradation model do)."""
import jax.numpy as jnp


def to_model_range(images):
  return jnp.asarray(images, jnp.float32) * 2.0 - 1.0


def to_image_range(x, clip=False):
  """[-1, 1] -> [0, 1]. Losses take it unclipped (no dead gradient outside the range, as SD's LPIPS
  term sees the raw reconstruction); images handed out (decodes, samples) take clip=True."""
  images = (x + 1.0) * 0.5
  return jnp.clip(images, 0.0, 1.0) if clip else images
