"""The train state: one pytree holding everything that a checkpoint must restore; the optimizer
update with its EMA; gradient accumulation (`config.train.accumulate_steps`)."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdeg.errors import ConfigError


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


def accumulate_steps(train) -> int:
  """config.train.accumulate_steps (default 1), checked."""
  k = train.get("accumulate_steps", 1)
  if isinstance(k, bool) or not isinstance(k, int) or k < 1:
    raise ConfigError(f"config.train.accumulate_steps={k!r}: must be an integer ≥ 1")
  return k


def accumulating(tx: optax.GradientTransformation, train) -> optax.GradientTransformation:
  """`tx` applied once every config.train.accumulate_steps calls, to the mean of their gradients
  (zero updates in between): k micro-batches of b give the update of one batch of k·b. Every task
  wraps its optimizers in this; train.steps then counts micro-batches."""
  k = accumulate_steps(train)
  return tx if k == 1 else optax.MultiSteps(tx, k).gradient_transformation()


def accumulates(opt_state) -> bool:
  """Whether an optimizer state (or its abstract shape) was made by `accumulating` with k > 1."""
  found = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.MultiStepsState))
  return any(isinstance(x, optax.MultiStepsState) for x in found)


def ema_options(train) -> dict:
  """apply_gradients' EMA arguments from config.train: ema_decay, ema_warmup, ema_exclude."""
  return dict(ema_decay=train.get("ema_decay"), ema_warmup=bool(train.get("ema_warmup", False)),
              ema_exclude=tuple(train.get("ema_exclude", ())))


def ema_decay_at(decay, n):
  """LitEma's (CompVis) warm-up at its n-th update (n ≥ 1): min(decay, (1 + n) / (10 + n))."""
  n = jnp.asarray(n, jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + n) / (10.0 + n))


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation, *, ema_decay=None,
                    ema_warmup=False, ema_exclude=(), model_state=None) -> TrainState:
  """One optimizer update (+ EMA of params when the state carries them).

  EMA: one update per call (per micro-batch under accumulation, as Lightning's batch-end hook
  updates LitEma); `ema_warmup` uses LitEma's warm-up decay; the top-level param groups named in
  `ema_exclude` are not averaged: their EMA copy is the trained params (GenDeg averages the UNet only).
  """
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if ema is not None and ema_decay is not None:
    decay = ema_decay_at(ema_decay, state.step + 1) if ema_warmup else ema_decay
    ema = optax.incremental_update(params, ema, step_size=1.0 - decay)
    if ema_exclude:
      ema = {k: params[k] if k in ema_exclude else v for k, v in ema.items()}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
                       model_state=state.model_state if model_state is None else model_state)
