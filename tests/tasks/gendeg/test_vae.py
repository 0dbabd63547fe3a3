"""GenDeg's autoencoder task: tiny training, eval metrics and grid, config errors."""
import math

import pytest

from jaxdeg import tasks
from jaxdeg.errors import ConfigError
from tests.tasks.gendeg.conftest import first_last, last_eval, vae_config


def test_tiny_vae_training_lowers_reconstruction_loss(vae_run):
  workdir, losses = vae_run
  assert sorted(losses) == list(range(1, 21))
  first, last = first_last(losses)
  assert last < 0.6 * first, (first, last)
  results = last_eval(workdir)
  assert results["step"] == 20 and results["num_examples"] == 2
  for k in ("psnr_clean", "psnr_degraded"):
    assert math.isfinite(results[k]) and results[k] > 10.0, results
  assert list((workdir / "images").glob("eval_grid_*.png"))


def test_lpips_weights_is_a_clear_error():
  with pytest.raises(ConfigError, match=r"config\.loss\.lpips_weights"):
    tasks.get(vae_config(loss__lpips_weights="/models/vgg16.pth"))


def test_unknown_degradation_type_is_a_clear_error():
  with pytest.raises(ConfigError, match=r"config\.pairs\.types.*'fog'"):
    tasks.get(vae_config(pairs__types=("haze", "fog")))
