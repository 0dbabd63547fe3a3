"""GenDeg's degradation-intensity statistics and their 129-way binning.

D = |clean − degraded| on copies resized to 256² (GenDeg resizes 8-bit images with Lanczos);
mu = mean(D) and sigma = std(D) over all pixels and channels. mu is binned into 128 equal bins on
[0, 0.7], sigma into 128 on [0, 0.4] (values past the top land in the last bin, as
`np.digitize(v, linspace(lo, hi, 129)) − 1` clipped in GenDeg's dataset); index 128 is the null
token used for classifier-free guidance.
"""
import jax
import jax.numpy as jnp

NUM_BINS = 128
NULL_INDEX = NUM_BINS
ONE_HOT_SIZE = NUM_BINS + 1
MU_RANGE = (0.0, 0.7)
SIGMA_RANGE = (0.0, 0.4)
STATS_SIZE = 256


def _resize(images, size, quantize):
  shape = images.shape[:-3] + (size, size, images.shape[-1])
  out = jax.image.resize(images.astype(jnp.float32), shape, method="lanczos3", antialias=True)
  out = jnp.clip(out, 0.0, 1.0)
  return jnp.round(out * 255.0) / 255.0 if quantize else out


def intensity_stats(clean, degraded, size=STATS_SIZE, quantize=True):
  """(mu, sigma) of |clean − degraded| for images (..., H, W, 3) in [0, 1]; batch shape out.

  `quantize` rounds the resized copies to 8-bit levels, as GenDeg's uint8 pipeline does.
  """
  clean, degraded = jnp.asarray(clean), jnp.asarray(degraded)
  if clean.shape != degraded.shape:
    raise ValueError(f"intensity_stats: clean {clean.shape} and degraded {degraded.shape} differ in shape")
  diff = jnp.abs(_resize(clean, size, quantize) - _resize(degraded, size, quantize))
  return diff.mean(axis=(-3, -2, -1)), diff.std(axis=(-3, -2, -1))


def bin_index(value, value_range):
  """Bin of `value` among NUM_BINS equal bins on value_range; above the range -> last bin."""
  lo, hi = value_range
  idx = jnp.floor((jnp.asarray(value, jnp.float32) - lo) / (hi - lo) * NUM_BINS)
  return jnp.clip(idx, 0, NUM_BINS - 1).astype(jnp.int32)


def mu_bin(mu):
  return bin_index(mu, MU_RANGE)


def sigma_bin(sigma):
  return bin_index(sigma, SIGMA_RANGE)


def bin_bounds(index, value_range):
  """(low, high) edges of bin `index`, e.g. to sample a value uniformly within a bin."""
  lo, hi = value_range
  width = (hi - lo) / NUM_BINS
  index = jnp.asarray(index, jnp.float32)
  return lo + index * width, lo + (index + 1) * width


def one_hot(index, null=None):
  """One-hot of length 129; where `null` is true the vector is the null token (index 128)."""
  index = jnp.asarray(index, jnp.int32)
  if null is not None:
    index = jnp.where(null, NULL_INDEX, index)
  return jax.nn.one_hot(index, ONE_HOT_SIZE, dtype=jnp.float32)


def stats_one_hot(mu, sigma, null=None):
  """GenDeg's c_stats: (..., 2, 129) with the mu row first, then the sigma row."""
  return jnp.stack([one_hot(mu_bin(mu), null), one_hot(sigma_bin(sigma), null)], axis=-2)


def null_stats(batch_shape=()):
  """The unconditional (null) c_stats for a batch."""
  return jnp.broadcast_to(one_hot(jnp.full((), NULL_INDEX)), tuple(batch_shape) + (2, ONE_HOT_SIZE))
