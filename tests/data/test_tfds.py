"""TFDS builders: each benchmark layout prepares (ArrayRecord) from a tiny folder and reads back."""
import os

import numpy as np
import pytest

from jaxdeg.data import layouts, pipeline
from jaxdeg.data.transforms import Decode
from tests.data.conftest import ident
from tests.data.test_sources import make_benchmark

# layout -> {split: subfolder} written under manual_dir (None: the manual_dir itself)
SPLITS = {"sots": {"indoor": "indoor", "outdoor": "outdoor"}, "rain100l": {"test": None},
          "lol": {"train": "our485", "test": "eval15"}, "gopro": {"train": "train", "test": "test"},
          "bsd68": {"test": None}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  from jaxdeg.data.tfds import TfdsSource
  root = tmp_path_factory.mktemp("tfds")
  out = {}
  for layout, splits in SPLITS.items():
    manual = root / "manual" / layout
    counts = {split: make_benchmark(manual / sub if sub else manual, layout) for split, sub in splits.items()}
    first = next(iter(splits))
    TfdsSource(layout, split=first, manual_dir=manual, data_dir=root / "data")  # prepares every split
    out[layout] = counts
  return root / "data", out


@pytest.mark.parametrize("layout", list(SPLITS))
def test_builder_prepares_and_reads_each_split(prepared, layout):
  from jaxdeg.data.tfds import BUILDERS, TfdsSource
  data_dir, counts = prepared
  files = os.listdir(data_dir / BUILDERS[layout] / "1.0.0")
  assert any(".array_record" in f for f in files)
  decode = Decode("raise", "")
  for split, n in counts[layout].items():
    src = TfdsSource(layout, split=split, data_dir=data_dir)  # no manual_dir needed once prepared
    assert len(src) == n
    recs = [decode.map(src[i]) for i in range(n)]
    assert all(r["type"] == layouts.PRESETS[layout].type_name for r in recs)
    assert all(r["clean"].shape == (16, 16, 3) and r["degraded"].shape == (16, 16, 3) for r in recs)
    if layout in ("rain100l", "lol", "gopro"):
      assert all(ident(r["clean"]) == ident(r["degraded"]) + 10 for r in recs)
    if layout == "sots" and split == "indoor":
      assert sorted((round(r["meta"]["A"], 4), round(r["meta"]["beta"], 4)) for r in recs) == [
          (0.8, 0.2), (0.9, 0.16), (1.0, 0.1)]
    if layout == "bsd68":
      assert all(0.07 < np.std(r["degraded"] - r["clean"] / 255.0) < 0.13 for r in recs)


def test_tfds_source_feeds_the_pipeline(prepared):
  from jaxdeg.data.tfds import TfdsSource
  data_dir, _ = prepared
  src = TfdsSource("gopro", split="train", data_dir=data_dir)
  ds = pipeline.train_dataset(src, crop=8, global_batch_size=4, seed=0, degraded_key=True)
  batch = next(iter(ds))
  assert batch["clean"].shape == batch["degraded_key"].shape == (4, 8, 8, 3)
  assert batch["type"].tolist() == [0] * 4  # vocabulary ('motion_blur',)


def test_unprepared_without_manual_dir_says_what_to_do(tmp_path):
  from jaxdeg.data.tfds import TfdsSource
  from jaxdeg.errors import DataError
  with pytest.raises(DataError, match="not prepared.*manual_dir"):
    TfdsSource("lol", data_dir=tmp_path)
  with pytest.raises(DataError, match="unknown TFDS benchmark"):
    TfdsSource("imagenet", data_dir=tmp_path)
