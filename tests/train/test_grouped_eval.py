"""Restoration on paired sources: metrics per degradation type and per test set, the Markdown
table, and the all-in-one protocol configs."""
import json

import numpy as np
import pytest

from jaxdeg import tasks
from jaxdeg.train import trainer
from tests.utils import load_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("aio3")
  config = load_config("configs/aio_3task.py:tiny")
  trainer.train_and_evaluate(config, workdir)
  return config, workdir, trainer.evaluate(config, workdir)


def test_metrics_per_type_and_test_set_add_up(trained):
  _, workdir, results = trained
  assert set(results["by_type"]) == {"haze", "rain", "gaussian_noise"}
  assert set(results["by_test_set"]) == {"held-out haze", "held-out rain", "held-out gaussian_noise"}
  for field in ("by_type", "by_test_set"):
    groups = results[field].values()
    assert sum(g["num_examples"] for g in groups) == results["num_examples"] == 6
    for metric in ("psnr_input", "psnr_output", "ssim_input", "ssim_output"):
      weighted = sum(g[metric] * g["num_examples"] for g in groups) / results["num_examples"]
      assert abs(weighted - results[metric]) < 1e-4, (field, metric)
  # each test set holds one type: the two groupings agree
  for t in ("haze", "rain", "gaussian_noise"):
    assert results["by_type"][t] == results["by_test_set"][f"held-out {t}"]
  # the degradations differ, so their input PSNRs do
  assert len({round(g["psnr_input"], 3) for g in results["by_type"].values()}) == 3
  table = (workdir / "metrics.md").read_text().splitlines()
  assert table[2].startswith("| group | psnr_input | psnr_output | ssim_input | ssim_output | examples |")
  assert sum(line.startswith("| type: ") for line in table) == 3
  assert json.loads((workdir / "metrics.json").read_text())["by_type"]["rain"]["num_examples"] == 2


def test_evaluation_from_checkpoint_reproduces_training_time_metrics(trained):
  _, workdir, results = trained
  at_training = json.loads((workdir / "eval_history.jsonl").read_text().splitlines()[-1])
  for t, entry in results["by_type"].items():
    assert np.isclose(entry["psnr_output"], at_training["by_type"][t]["psnr_output"], atol=1e-4)


def test_protocol_configs_build():
  five = load_config("configs/aio_5task.py:tiny")
  assert len(five.data.sources) == 5
  assert tasks.get(five).group_names()["type"] == ("gaussian_noise", "haze", "low_light", "motion_blur", "rain")
  full = load_config("configs/aio_5task.py:/data/aio")
  labels = [s["label"] for s in full.data.eval_sources]
  assert labels == ["BSD68 σ=25", "Rain100L", "SOTS outdoor", "GoPro", "LOL"]
  three = load_config("configs/aio_3task.py")
  assert three.model.name == "promptir" and len(three.data.eval_sources) == 5
