"""Entropy models and GDN layers for disentangle-by-compression, channels last.

- `EntropyBottleneck`: Ballé et al.'s fully factorised density with CompressAI's
  `EntropyBottleneck` semantics and parameter layout (`matrix_i` (C, f_out, f_in), `bias_i`,
  `factor_i` (C, f_out, 1), `quantiles` (C, 1, 3)), so official weights import unchanged.
  Train: x + U(-1/2, 1/2) noise from the 'quantize' rng stream (or an explicit key); eval:
  rounding around the learned medians. `aux_loss` fits the medians/tails (quantiles) to the
  current density; only the quantiles receive its gradient.
- `BitEstimator`: the per-channel CDF of the local compressor (Ballé 2017, iclr_17_compression).
- `GDN`: generalised divisive normalisation and its inverse, with the bounded, squared
  reparametrisation of beta and gamma, so the effective values stay non-negative.
- Rate helpers: bits per sample for the global code, clamped bits per embedding pixel for the local.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@jax.custom_vjp
def lower_bound(x, bound):
  """max(x, bound) whose gradient still flows where it would push x up from below the bound
  (CompressAI's LowerBound), so a parameter stuck at the bound can recover."""
  return jnp.maximum(x, bound)


def _lower_bound_fwd(x, bound):
  return jnp.maximum(x, bound), (x, bound)


def _lower_bound_bwd(res, g):
  x, bound = res
  passes = (x >= bound) | (g < 0)
  return g * passes.astype(g.dtype), jnp.zeros_like(bound)


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


# ------------------------------------------------------------------------------------------------
# factorised entropy bottleneck (global code)


def _uniform_half(key, shape, dtype=jnp.float32):
  return jax.random.uniform(key, shape, dtype, -0.5, 0.5)


class EntropyBottleneck(nn.Module):
  """Factorised prior over the last axis (channels) of any [..., C] input.

  Returns (values, likelihoods): values are noisy (train) or quantised (eval), likelihoods have
  the input's shape and are bounded below by `likelihood_bound`."""
  channels: int
  filters: tuple = (3, 3, 3, 3)
  init_scale: float = 10.0
  tail_mass: float = 1e-9
  likelihood_bound: float = 1e-9

  def setup(self):
    dims = (1,) + tuple(self.filters) + (1,)
    scale = self.init_scale ** (1 / (len(self.filters) + 1))
    c = self.channels
    self.matrices = [self.param(f"matrix_{i}", nn.initializers.constant(np.log(np.expm1(1 / scale / dims[i + 1]))),
                                (c, dims[i + 1], dims[i])) for i in range(len(dims) - 1)]
    self.biases = [self.param(f"bias_{i}", _uniform_half, (c, dims[i + 1], 1)) for i in range(len(dims) - 1)]
    self.factors = [self.param(f"factor_{i}", nn.initializers.zeros_init(), (c, dims[i + 1], 1))
                    for i in range(len(self.filters))]
    s = self.init_scale
    self.quantiles = self.param("quantiles", lambda _, shape: jnp.tile(jnp.array([-s, 0.0, s]), shape[:2] + (1,)),
                                (c, 1, 3))

  def logits_cumulative(self, inputs, stop_gradient=False):
    """Logit of the cumulative density at `inputs` [C, 1, N] → [C, 1, N]."""
    sg = jax.lax.stop_gradient if stop_gradient else (lambda a: a)
    logits = inputs
    for i, matrix in enumerate(self.matrices):
      logits = jnp.matmul(nn.softplus(sg(matrix)), logits) + sg(self.biases[i])
      if i < len(self.factors):
        logits = logits + jnp.tanh(sg(self.factors[i])) * jnp.tanh(logits)
    return logits

  def medians(self):
    return self.quantiles[:, 0, 1]

  def _likelihood_cn(self, values):
    lower = self.logits_cumulative(values - 0.5)
    upper = self.logits_cumulative(values + 0.5)
    # take the difference on the side where both sigmoids are small, so it does not cancel as 1 − 1
    sign = -jax.lax.stop_gradient(jnp.sign(lower + upper))
    likelihood = jnp.abs(nn.sigmoid(sign * upper) - nn.sigmoid(sign * lower))
    return lower_bound(likelihood, jnp.asarray(self.likelihood_bound, likelihood.dtype))

  def likelihood(self, values):
    """P(bin of width 1 centred at each value) for [..., C] values."""
    return _from_cn(self._likelihood_cn(_to_cn(values)), values.shape)

  def __call__(self, x, train: bool = False, noise_key=None):
    if x.shape[-1] != self.channels:
      raise ValueError(f"EntropyBottleneck({self.channels}) got {x.shape[-1]} channels (shape {x.shape})")
    if train:
      key = self.make_rng("quantize") if noise_key is None else noise_key
      values = x + jax.random.uniform(key, x.shape, x.dtype, -0.5, 0.5)
    else:
      med = self.medians().astype(x.dtype)
      values = jnp.round(x - med) + med
    return values, self.likelihood(values)

  def aux_loss(self):
    """L1 distance of the density's logits at the quantiles from their targets (−t, 0, t), with
    t = log(2/tail_mass − 1): trains the medians and tails; the density itself is held fixed."""
    t = math.log(2 / self.tail_mass - 1)
    target = jnp.array([-t, 0.0, t], self.quantiles.dtype)
    logits = self.logits_cumulative(self.quantiles, stop_gradient=True)
    return jnp.abs(logits - target).sum()


def _to_cn(x):
  """[..., C] → [C, 1, N]."""
  return jnp.moveaxis(x.reshape(-1, x.shape[-1]), -1, 0)[:, None, :]


def _from_cn(v, shape):
  return jnp.moveaxis(v[:, 0, :], 0, -1).reshape(shape)


# ------------------------------------------------------------------------------------------------
# BitEstimator (local code)


class _CdfStage(nn.Module):
  """x·softplus(h) + b, then x + tanh(x)·tanh(a); the final stage is a sigmoid instead."""
  final: bool = False

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    init = nn.initializers.normal(0.01)
    x = x * nn.softplus(self.param("h", init, (c,))) + self.param("b", init, (c,))
    if self.final:
      return nn.sigmoid(x)
    return x + jnp.tanh(x) * jnp.tanh(self.param("a", init, (c,)))


class BitEstimator(nn.Module):
  """Per-channel cumulative distribution function of [..., C] values (monotone, in (0, 1))."""

  @nn.compact
  def __call__(self, x):
    for i in range(3):
      x = _CdfStage(name=f"f{i + 1}")(x)
    return _CdfStage(final=True, name="f4")(x)


# ------------------------------------------------------------------------------------------------
# GDN / IGDN


class GDN(nn.Module):
  """y_i = x_i / sqrt(beta_i + Σ_j gamma_ij x_j²) (or x_i · sqrt(...) when inverse) over [..., C].

  Stored beta, gamma are square roots bounded below; the effective values are
  bound(p)² − pedestal ≥ 0. gamma is (out i, in j), as the official checkpoints store it."""
  channels: int
  inverse: bool = False
  beta_min: float = 1e-6
  gamma_init: float = 0.1
  reparam_offset: float = 2.0 ** -18

  def setup(self):
    pedestal = self.reparam_offset ** 2
    c = self.channels
    self.beta = self.param("beta", lambda _, s: jnp.sqrt(jnp.ones(s) + pedestal), (c,))
    self.gamma = self.param("gamma", lambda _, s: jnp.sqrt(self.gamma_init * jnp.eye(s[0]) + pedestal), (c, c))

  def effective_params(self):
    """(beta, gamma) as used in the normalisation: non-negative whatever the stored values."""
    pedestal = self.reparam_offset ** 2
    beta_bound = (self.beta_min + pedestal) ** 0.5
    beta = lower_bound(self.beta, jnp.asarray(beta_bound, self.beta.dtype)) ** 2 - pedestal
    gamma = lower_bound(self.gamma, jnp.asarray(self.reparam_offset, self.gamma.dtype)) ** 2 - pedestal
    return beta, gamma

  def __call__(self, x):
    if x.shape[-1] != self.channels:
      raise ValueError(f"GDN({self.channels}) got {x.shape[-1]} channels (shape {x.shape})")
    beta, gamma = self.effective_params()
    norm = jnp.sqrt(jnp.einsum("...j,ij->...i", x * x, gamma) + beta)
    return x * norm if self.inverse else x / norm


class IGDN(GDN):
  """Inverse GDN: multiplies by the norm instead of dividing (the synthesis transform's layer)."""
  inverse: bool = True


# ------------------------------------------------------------------------------------------------
# rates


def global_rate(likelihoods):
  """Bits per sample, batch mean: −Σ_channels log2 p, averaged over the batch axis [B, C]."""
  return (-jnp.log2(likelihoods).reshape(likelihoods.shape[0], -1).sum(axis=1)).mean()


def local_rate(probabilities, embedding_shape):
  """Σ clamp(−log2 p, 0, 50) / (B·H'·W'), where B, H', W' are those of the local embedding that
  went into the compressor (the official ImageCompressor's "bpp" of its input)."""
  b, h, w = embedding_shape[:3]
  bits = jnp.clip(-jnp.log2(probabilities + 1e-10), 0, 50)
  return bits.sum() / (b * h * w)


__all__ = ["EntropyBottleneck", "BitEstimator", "GDN", "IGDN", "lower_bound", "global_rate", "local_rate"]
