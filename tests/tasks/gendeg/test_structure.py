"""GenDeg's structure-correction task: the misalignment it trains against, tiny training, errors."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import tasks
from jaxdeg.errors import ConfigError
from jaxdeg.tasks import structure
from jaxdeg.tasks import runs
from jaxdeg.train import trainer
from tests.tasks.gendeg.conftest import ONE_DEVICE, first_last, last_eval, shared_run
from tests.utils import load_config, max_abs_diff


def structure_config(**fields):
  return load_config("configs/gendeg_structure.py:tiny", **{**ONE_DEVICE, **fields})


def test_warp_identity_and_shift():
  image = jnp.asarray(np.random.default_rng(0).random((9, 11, 3)), jnp.float32)
  np.testing.assert_allclose(structure.warp(image, 0.0, 0.0, 0.0, 1.0), image, atol=1e-6)
  shifted = structure.warp(image, 1.0, 2.0, 0.0, 1.0)
  np.testing.assert_allclose(shifted[1:, 2:], image[:-1, :-2], atol=1e-6)


def test_tiny_structure_training_lowers_loss(tmp_path_factory):
  workdir, losses = shared_run(tmp_path_factory, "structure",
                               lambda: structure_config(steps=30, train__log_every=1))
  first, last = first_last(losses)
  assert last < 0.7 * first, (first, last)
  results = last_eval(workdir)
  assert math.isfinite(results["psnr_corrected"]) and math.isfinite(results["psnr_generated"]), results


def test_input_channels_must_be_clean_and_generated():
  with pytest.raises(ConfigError, match="in_channels=6"):
    tasks.get(structure_config(model__in_channels=3))


def test_structure_reads_a_trained_ldm_when_initialised(ldm_run):
  # the LDM's weights arrive in the state only when the jitted init runs (not at construction)
  config = structure_config(structure__ldm_workdir=str(ldm_run[0]), structure__ldm_steps=2)
  setup = trainer.Setup(config)
  assert setup.task.pairs.vocabulary == setup.task.ldm.task.context.types
  state = setup.init(setup.rng)
  _, _, ldm_state, _ = runs.load_run(str(ldm_run[0]))
  assert max_abs_diff(state.model_state["ldm"]["params"], ldm_state.ema_params) == 0.0
  assert max_abs_diff(state.model_state["ldm"]["vae"], ldm_state.model_state["vae"]) == 0.0
