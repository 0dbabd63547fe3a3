"""Gradient accumulation (config.train.accumulate_steps) and the EMA options of apply_gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdeg import tasks
from jaxdeg.errors import ConfigError
from jaxdeg.tasks.base import Task
from jaxdeg.train import trainer
from jaxdeg.train.defaults import base_config
from jaxdeg.train.state import TrainState, accumulating, apply_gradients, ema_options
from tests.utils import load_config, max_abs_diff


class _Regression(Task):
  """A least-squares model: its loss is a mean over the batch, so k micro-batches of b average to the
  gradient of one batch of k·b."""

  def __init__(self, config):
    super().__init__(config)
    self.tx = accumulating(optax.adam(0.05), config.train)

  def init_state(self, rng):
    params = {"w": jax.random.normal(rng, (5, 3)), "b": jnp.zeros((3,))}
    return TrainState.create(params=params, tx=self.tx, rng=rng)

  def train_step(self, state, batch):
    def loss_fn(p):
      return jnp.mean(jnp.square(jnp.tanh(batch["x"] @ p["w"] + p["b"]) - batch["y"]))
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return apply_gradients(state, grads, self.tx), {"loss": loss}

  def eval_step(self, state, batch):
    raise AssertionError("not evaluated")

  def train_data(self):
    raise AssertionError("batches are given by the test")

  def eval_data(self):
    return []


def _setup(monkeypatch, batch_size, accumulate):
  config = base_config()
  config.task = "regression"
  config.mesh.num_devices = 1
  config.train.batch_size = batch_size
  config.train.accumulate_steps = accumulate
  monkeypatch.setattr(tasks, "get", _Regression)
  return trainer.Setup(config)


def test_four_micro_batches_equal_one_batch_of_four_times_the_size(monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 32, 5)).astype(np.float32)
  y = rng.uniform(-1, 1, size=(3, 32, 3)).astype(np.float32)
  big = _setup(monkeypatch, 32, 1)
  small = _setup(monkeypatch, 8, 4)
  state_big, state_small = big.init(big.rng), small.init(small.rng)
  for update in range(3):
    state_big, _ = big.train_step(state_big, big.global_batch({"x": x[update], "y": y[update]}))
    for micro in range(4):
      before = jax.device_get(state_small.params)
      rows = slice(8 * micro, 8 * micro + 8)
      state_small, _ = small.train_step(state_small, small.global_batch({"x": x[update, rows], "y": y[update, rows]}))
      if micro < 3:  # no update until the k-th micro-batch
        assert max_abs_diff(before, state_small.params) == 0.0
  diff = max_abs_diff(state_big.params, state_small.params)
  assert diff <= 1e-5, diff
  # and the updates did something
  assert max_abs_diff(state_big.params, big.init(big.rng).params) > 0.1


def test_accumulation_config_errors(monkeypatch):
  with pytest.raises(ConfigError, match=r"accumulate_steps=0: must be an integer ≥ 1"):
    _setup(monkeypatch, 8, 0)
  # a task whose optimizer does not accumulate is refused before training
  monkeypatch.setattr(_Regression, "__init__", lambda self, config: (Task.__init__(self, config),
                                                                     setattr(self, "tx", optax.adam(0.1)))[0])
  with pytest.raises(ConfigError, match="does not accumulate"):
    _setup(monkeypatch, 8, 2)


def test_every_task_accumulates():
  # every task wraps its optimizers: the trainer's check passes on the restore task's tiny config
  setup = trainer.Setup(load_config("configs/restore_procedural.py:tiny", train__accumulate_steps=2,
                                    mesh__num_devices=1))
  assert isinstance(setup.abstract_state.opt_state, optax.MultiStepsState)


def _lit_ema(shadow, params_seq, decay):
  """LitEma.forward (CompVis ldm/modules/ema.py) re-stated in numpy: num_updates += 1, then
  decay = min(decay, (1 + n) / (10 + n)), shadow -= (1 − decay) · (shadow − param)."""
  shadow = np.array(shadow, np.float64)
  for n, p in enumerate(params_seq, start=1):
    d = min(decay, (1 + n) / (10 + n))
    shadow -= (1 - d) * (shadow - p)
  return shadow


def test_ema_warmup_equals_lit_ema_and_leaves_excluded_groups_alone():
  params = {"unet": jnp.ones((4,)), "context": jnp.full((2,), 3.0)}
  tx = optax.sgd(0.1)
  state = TrainState.create(params=params, tx=tx, rng=jax.random.PRNGKey(0), ema=True)
  train = base_config().train
  train.ema_decay, train.ema_warmup, train.ema_exclude = 0.9999, True, ("context",)
  seen = []
  for i in range(10):
    grads = {"unet": jnp.full((4,), float(i + 1)), "context": jnp.full((2,), -1.0)}
    state = apply_gradients(state, grads, tx, **ema_options(train))
    seen.append(np.asarray(state.params["unet"], np.float64))
  np.testing.assert_allclose(state.ema_params["unet"], _lit_ema(np.ones(4), seen, 0.9999), rtol=1e-6)
  # the projections are not averaged: their EMA copy is the trained params
  np.testing.assert_array_equal(state.ema_params["context"], state.params["context"])
  assert not np.allclose(state.params["context"], 3.0)
  # without warm-up the decay is the constant 0.9999: the EMA has hardly moved
  plain = TrainState.create(params=params, tx=tx, rng=jax.random.PRNGKey(0), ema=True)
  for i in range(10):
    plain = apply_gradients(plain, {"unet": jnp.full((4,), float(i + 1)), "context": jnp.zeros((2,))}, tx,
                            ema_decay=0.9999)
  assert np.abs(np.asarray(plain.ema_params["unet"]) - 1.0).max() < 1e-2
