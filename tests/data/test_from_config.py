"""Datasets from config.data: source kinds, mixing, eval, config errors, no TensorFlow needed."""
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from jaxdeg.data import from_config
from jaxdeg.errors import ConfigError
from tests.data.conftest import flat, gradient, write
from tests.utils import ROOT


def _config(**data):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.train = ml_collections.ConfigDict(dict(batch_size=4))
  c.eval = ml_collections.ConfigDict(dict(batch_size=2))
  c.data = from_config.defaults()
  c.data.update(data)
  return c


@pytest.fixture
def folders(tmp_path):
  for i in range(1, 4):
    write(tmp_path / "photos" / f"{i}.png", flat(i, 20, 20))
    img = gradient(20, 20, seed=i)
    write(tmp_path / "pairs/clean" / f"{i}.png", img)
    write(tmp_path / "pairs/degraded" / f"{i}.png", 255 - img)
  return tmp_path


def test_mixed_train_and_eval_from_config(folders):
  noise = {"name": "gaussian_noise", "intensity": (0.1, 0.2)}
  config = _config(
      crop=8, eval_crop=16, flip="h", degraded_key=True,
      sources=(dict(kind="folder", path=str(folders / "photos"), weight=1.0, degradations=noise),
               dict(kind="paired", path=str(folders / "pairs"), type="invert", weight=1.0)),
      eval_sources=(dict(kind="paired", path=str(folders / "pairs"), type="invert"),))
  assert from_config.type_names(config.data) == ("gaussian_noise", "invert")
  batch = next(iter(from_config.train_data(config)))
  assert set(batch) == {"clean", "degraded", "degraded_key", "type", "intensity", "source"}
  by_source = {int(s): int(t) for s, t in zip(batch["source"], batch["type"])}
  assert all(by_source[s] == s for s in by_source)  # source 0 -> gaussian_noise (0), 1 -> invert (1)
  evaluation = from_config.eval_data(config)
  first, second = list(evaluation), list(evaluation)
  assert len(first) == 2 and first[1]["mask"].tolist() == [1.0, 0.0]
  np.testing.assert_array_equal(first[0]["degraded"], second[0]["degraded"])
  np.testing.assert_allclose(first[0]["degraded"], 1.0 - first[0]["clean"], atol=1e-6)


def test_samples_without_degradations_give_images(folders):
  config = _config(crop=16, sources=(dict(kind="samples", photos=("astronaut", "coffee")),))
  batch = next(iter(from_config.train_data(config)))
  assert set(batch) == {"image"} and batch["image"].shape == (4, 16, 16, 3)


@pytest.mark.parametrize("source, message", [
    (dict(kind="ftp", path="x"), r"sources\[0\].kind='ftp'"),
    (dict(kind="folder", path="x", layout="sots"), r"unknown key\(s\) \['layout'\]"),
    (dict(kind="paired"), "missing path"),
    (dict(kind="folder", path="x", degradations="no_such_thing"), "unknown degradation"),
])
def test_config_errors_name_the_field(folders, source, message):
  if "path" in source:
    source["path"] = str(folders / "photos")
  with pytest.raises(ConfigError, match=message):
    from_config.train_data(_config(crop=8, sources=(source,)))


def test_mixing_pairs_with_bare_clean_images_is_refused(folders):
  config = _config(crop=8, sources=(dict(kind="folder", path=str(folders / "photos")),
                                    dict(kind="paired", path=str(folders / "pairs"))))
  with pytest.raises(ConfigError, match="cannot mix sources of pairs with sources of clean images"):
    from_config.train_data(config)
  with pytest.raises(ConfigError, match="on_error='ignore'"):
    from_config.train_data(_config(on_error="ignore", sources=config.data.sources))
  with pytest.raises(ConfigError, match="eval_sources is empty"):
    from_config.eval_data(config)


def test_data_modules_import_without_tensorflow():
  code = ("import sys, jaxdeg, jaxdeg.data.from_config, jaxdeg.data.pipeline, jaxdeg.data.records, "
          "jaxdeg.data.tfds; bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]; "
          "sys.exit(f'imported {bad}' if bad else 0)")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
