"""Cheap parameter init for model tests.

`model.init` compiles a threefry kernel per parameter shape, which takes seconds on a small CPU;
tests only need shapes from `jax.eval_shape` and numbers from numpy.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, *args, seed=0, residual_scale=0.1):
  """Variables shaped as `model.init(key, *args)`, filled from numpy: kernels ~ N(0, 1/fan_in),
  norm scales ~ 1, other vectors small but non-zero (so zero-initialised residual scales are live)."""
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), *args))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if len(s.shape) >= 2:
      fan_in = int(np.prod(s.shape[:-1]))
      a = rng.normal(size=s.shape) / np.sqrt(fan_in)
    elif name.endswith("['scale']"):
      a = 1 + 0.1 * rng.normal(size=s.shape)
    else:
      a = residual_scale * rng.normal(size=s.shape)
    return jnp.asarray(a, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def count_params(model, *args):
  v = jax.eval_shape(model.init, jax.random.key(0), *args)
  return sum(x.size for x in jax.tree.leaves(nn.unbox(v)))
