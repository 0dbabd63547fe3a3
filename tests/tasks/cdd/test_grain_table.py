"""The grain statistics table of `jaxdeg.cdd_eval` on a tiny film-grain run (a few steps)."""
import json
import math
import os

import numpy as np
import pytest

from jaxdeg import cdd_eval, cdd_grain_eval
from jaxdeg.train import trainer
from tests.utils import load_config

CONFIG = "configs/cdd_film_grain.py:tiny"
STEPS = 4  # a barely trained model: the table, the baselines and the wiring are under test


def test_the_film_grain_config_asks_for_grain_statistics():
  assert load_config(CONFIG).eval.grain_stats is True
  assert load_config("configs/cdd_film_grain.py:pairs=/data/grain").eval.grain_stats is True


def test_each_reference_comes_from_the_previous_valid_example():
  # batch of 4 with 3 valid examples: 0 takes the last valid one (2), the padding row points at 2 too
  assert cdd_grain_eval.partner_index(np.array([1.0, 1.0, 1.0, 0.0])).tolist() == [2, 0, 1, 2]


def test_cdd_eval_adds_the_grain_tables_of_a_tiny_film_grain_run(tmp_path, capsys):
  # one test trains the run, so parallel workers never train it twice
  workdir = str(tmp_path)
  # no eval while training: cdd_eval evaluates the final checkpoint itself. The loss weights and the
  # optimizer of configs/cdd_general.py:tiny (the model is the same): the compiled init and train step
  # are then the ones the shared tiny cdd run put in the compilation cache
  config = load_config(CONFIG, steps=STEPS, mesh__num_devices=1, train__eval_every=0)
  general = load_config("configs/cdd_general.py:tiny")
  assert config.model == general.model
  config.loss, config.optimizer = general.loss, general.optimizer
  trainer.train_and_evaluate(config, workdir)
  assert cdd_eval.main([workdir]) == 0
  printed = capsys.readouterr().out
  assert "| method | PSNR (dB) | SSIM | MS-SSIM |" in printed  # the image metrics table comes first
  with open(os.path.join(workdir, "grain_stats.md")) as f:
    text = f.read()
  assert text.split("\n", 2)[2] in printed
  for channel in ("Y", "Cb", "Cr"):
    assert f"| method ({channel}) | σ-vs-luma error | relative | spectrum distance | histogram JSD |" in text
  for _, label in cdd_grain_eval.ROWS:
    assert text.count(f"| {label} |") == 3
  assert "6 examples" in text and "AV1 fit failed" not in text
  with capsys.disabled():
    print("\n" + text)

  with open(os.path.join(workdir, "grain_stats.json")) as f:
    results = json.load(f)
  methods = results["methods"]
  assert results["num_examples"] == 6 and results["step"] == STEPS and results["failed_fits"] == []
  for method, channels in methods.items():
    for channel, stats in channels.items():
      for name, value in stats.items():
        assert not math.isnan(value), (method, channel, name)
  # no grain: the curve error is the true σ itself, no spectrum to compare
  for channel in ("Y", "Cb", "Cr"):
    assert methods["clean"][channel]["curve_error_rel"] == pytest.approx(1.0)
    assert methods["clean"][channel]["spectrum_distance"] == float("inf")
  # the AV1 table fitted on the reference (same preset, seed and strength, another photo) is close
  av1, clean = methods["av1_fit"]["Y"], methods["clean"]["Y"]
  assert av1["curve_error_rel"] < 0.35 and av1["spectrum_distance"] < 1.0 and av1["jsd"] < 0.05
  assert av1["jsd"] < 0.2 * clean["jsd"]
  for method in ("transfer", "reproduction", "residual_paste"):
    assert np.isfinite(methods[method]["Y"]["spectrum_distance"])
