"""Full-reference image quality metrics on float images in [0, 1] (batched over leading dims)."""
import jax.numpy as jnp


def psnr(x, y, data_range=1.0):
  """Peak signal-to-noise ratio per image over the last three axes (H, W, C), in dB."""
  mse = jnp.mean(jnp.square(jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32)), axis=(-3, -2, -1))
  return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-12))
