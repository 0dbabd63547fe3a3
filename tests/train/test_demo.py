"""`make demo` in small: synthesis into shards, a restorer trained on them, evaluation per type."""
import json
import os

import numpy as np
from PIL import Image

from jaxdeg import main
from jaxdeg.synth import contact_sheet
from tests.utils import load_config


def test_demo_pipeline_synthesises_trains_on_the_shards_and_evaluates_per_type(tmp_path):
  pairs, run = str(tmp_path / "synthetic"), str(tmp_path / "restorer")
  main.run(load_config("configs/demo.py:synthesize-tiny"), pairs, mode="synthesize")
  with open(os.path.join(pairs, "synthesis_summary-p00000.json")) as f:
    summary = json.load(f)
  kept = summary["kept"]
  assert summary["jobs"] == 4 and kept >= 2  # 2 photos × 2 types, off-target samples dropped
  by_type = contact_sheet.pairs_by_type([os.path.join(pairs, f) for f in os.listdir(pairs)
                                         if f.endswith(".array_record")], per_type=10)
  assert sum(len(v) for v in by_type.values()) == kept and set(by_type) <= {"haze", "rain"}
  for clean, degraded, meta in sum(by_type.values(), []):
    assert clean.shape == degraded.shape == (64, 64, 3) and np.abs(clean.astype(int) - degraded).mean() > 1
    assert meta["type"] in ("haze", "rain")
  sheet = np.asarray(Image.open(os.path.join(pairs, contact_sheet.FILE)))
  assert sheet.shape[0] > 128 * len(by_type)  # one row of pairs per type

  config = load_config(f"configs/demo.py:tiny:{pairs}", mesh__num_devices=1)
  main.run(config, run, mode="train")
  results = main.run(config, run, mode="evaluate")
  assert results["step"] == config.train.steps and results["num_examples"] == 2
  assert set(results["by_type"]) == {"haze", "rain"}
  for entry in results["by_type"].values():
    assert np.isfinite(entry["psnr_output"]) and entry["num_examples"] == 1
  assert os.path.exists(os.path.join(run, "demo.png")) and "| type: haze |" in open(os.path.join(run, "metrics.md")).read()
