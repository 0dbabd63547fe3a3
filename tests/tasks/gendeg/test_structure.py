"""GenDeg's structure-correction task: the misalignment it trains against, tiny training, errors."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import tasks
from jaxdeg.data import samples
from jaxdeg.data.images import to_float
from jaxdeg.data.resize import lanczos_square
from jaxdeg.errors import ConfigError
from jaxdeg.tasks import structure
from jaxdeg.tasks import runs
from jaxdeg.tasks.gendeg_data import EVAL_PHOTOS
from jaxdeg.train import trainer
from tests.tasks.gendeg.conftest import STRUCTURE_RUN, first_last, last_eval, structure_config
from tests.utils import max_abs_diff


def test_warp_identity_and_shift():
  image = jnp.asarray(np.random.default_rng(0).random((9, 11, 3)), jnp.float32)
  np.testing.assert_allclose(structure.warp(image, 0.0, 0.0, 0.0, 1.0), image, atol=1e-6)
  shifted = structure.warp(image, 1.0, 2.0, 0.0, 1.0)
  np.testing.assert_allclose(shifted[1:, 2:], image[:-1, :-2], atol=1e-6)


def test_tiny_structure_training_lowers_loss(structure_run):
  workdir, losses = structure_run
  first, last = first_last(losses)
  assert last < 0.7 * first, (first, last)
  results = last_eval(workdir)
  assert math.isfinite(results["psnr_corrected"]) and math.isfinite(results["psnr_generated"]), results


def held_out_crops(size, crop, grid):
  """grid² crops (crop², a regular grid of positions) of each held-out photo resized to size² as
  config.data.resize does: (N, crop, crop, 3) in [0, 1]."""
  crops = []
  for name in EVAL_PHOTOS:
    photo = to_float(lanczos_square(samples.load(name), size))
    for y in np.linspace(0, size - crop, grid).astype(int):
      for x in np.linspace(0, size - crop, grid).astype(int):
        crops.append(photo[y:y + crop, x:x + crop])
  return jnp.asarray(np.stack(crops))


def test_trained_corrector_realigns_held_out_pairs(structure_run):
  # The task's own eval step on crops of photos it never trained on, each with its own motion blur
  # and misalignment: the corrected image must be closer to the target than the misaligned one.
  config, task, state, _ = runs.load_run(str(structure_run[0]))
  images = held_out_crops(STRUCTURE_RUN["data__resize"], config.data.crop, grid=3)
  out = task.eval_step(state, {"image": images, "index": jnp.arange(len(images))})
  gain = np.asarray(out["metrics"]["psnr_corrected"] - out["metrics"]["psnr_generated"])
  assert len(gain) == 18 and np.mean(gain) > 3.0 and np.min(gain) > 0.0, gain.round(2)


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
