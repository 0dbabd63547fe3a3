"""BatchNorm with torch's `BatchNorm2d` semantics, for the modules that follow the official code.

Training normalises with the batch mean and the biased batch variance (as flax and torch both do),
but the running statistics follow torch: running ← (1 − m)·running + m·batch with m = 0.1, the
variance entering as the *unbiased* estimate (× n/(n − 1), n = B·H·W). flax's BatchNorm feeds the
biased one, so an imported model fine-tuned with it drifts from the official numbers. The batch
variance is computed in two passes (mean of squared deviations), as torch does, not as E[x²] − E[x]².
Variables keep flax's layout (params scale/bias, batch_stats mean/var), so checkpoints are unchanged.
Under data sharding the reductions are over the global batch (see moco.py).
"""
import flax.linen as nn
import jax.numpy as jnp

from jaxdeg.models import layers


class TorchBatchNorm(nn.Module):
  momentum: float = 0.1  # torch's convention: the weight of the new batch
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    scale = self.param("scale", layers.logical(nn.initializers.ones_init(), layers.VECTOR_AXES), (c,))
    bias = self.param("bias", layers.logical(nn.initializers.zeros_init(), layers.VECTOR_AXES), (c,))
    running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    running_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x, axis=axes)
      var = jnp.mean(jnp.square(x - mean), axis=axes)
      n = x.size // c
      if not self.is_initializing():
        m = self.momentum
        running_mean.value = (1 - m) * running_mean.value + m * mean
        running_var.value = (1 - m) * running_var.value + m * var * (n / max(n - 1, 1))
    else:
      mean, var = running_mean.value, running_var.value
    return (x - mean) * (scale / jnp.sqrt(var + self.epsilon)) + bias


__all__ = ["TorchBatchNorm"]
