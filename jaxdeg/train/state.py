"""The train state: one pytree holding everything that a checkpoint must restore."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
  """step, params, optimizer state, non-trained model state (batch stats), EMA params, base rng.

  Tasks with several models (generator and critic) keep dicts in `params` and `opt_state`.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any = flax.struct.field(default_factory=dict)
  ema_params: Any = None
  rng: jax.Array = None

  @classmethod
  def create(cls, *, params, tx: optax.GradientTransformation, rng, model_state=None, ema=False):
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               model_state=model_state or {}, ema_params=params if ema else None, rng=rng)

  def inference_params(self, use_ema=True):
    """EMA params when the run keeps them (and `use_ema`), else the trained params: what every
    evaluation, sampler and exported model uses."""
    return self.ema_params if use_ema and self.ema_params is not None else self.params

  def step_rng(self):
    """A fresh key per step, derived from the base key: identical on any mesh and on resume."""
    return jax.random.fold_in(self.rng, self.step)


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation, *, ema_decay=None,
                    model_state=None) -> TrainState:
  """One optimizer update (+ EMA of params when the state carries them)."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if ema is not None and ema_decay is not None:
    ema = optax.incremental_update(params, ema, step_size=1.0 - ema_decay)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
                       model_state=state.model_state if model_state is None else model_state)
