"""Every kind of bad input is skipped and counted by reason (or raises), and the good data all arrives."""
import json
import os

import numpy as np
import pytest

from jaxdeg.data import pipeline, skips, sources
from jaxdeg.errors import DataError
from tests.data.conftest import flat, ident, write

GOOD = (1, 2, 3, 4, 5)


def _cut(path, fraction=0.6):
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * fraction)])


def _corrupt(path):
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(data))


def bad_folder(root):
  """Five good 24² images (ids 1..5) among every kind of bad file; -> {reason: count}."""
  rng = np.random.default_rng(0)
  for i in GOOD:
    write(root / f"good{i}.png", flat(i, 24, 24))
  (root / "zero.png").write_bytes(b"")
  (root / "junk.jpg").write_bytes(rng.bytes(500))
  (root / "notes.txt").write_text("not a picture")
  noisy = rng.integers(0, 256, (64, 64, 3), np.uint8)
  _cut(write(root / "sub/truncated.jpg", noisy, quality=90))
  _cut(write(root / "sub/truncated.png", noisy))
  _corrupt(write(root / "sub/corrupt.png", noisy))
  write(root / "small.png", flat(9, 8, 24))
  return {"corrupt": 1, "empty_file": 1, "not_an_image": 2, "too_small": 1, "truncated": 2}


def bad_pairs(root):
  """Two good pairs (ids 1, 2) and broken partners; -> {reason: count}."""
  for i in (1, 2):
    write(root / f"degraded/p{i}.png", flat(i, 24, 24))
    write(root / f"clean/p{i}.png", flat(i + 10, 24, 24))
  write(root / "degraded/orphan.png", flat(3, 24, 24))
  write(root / "clean/lonely.png", flat(4, 24, 24))
  write(root / "degraded/wide.png", flat(5, 24, 30))
  write(root / "clean/wide.png", flat(15, 24, 24))
  return {"missing_partner": 2, "size_mismatch": 1}


def _seen_ids(ds, batches, field="image"):
  it = iter(ds)
  return [ident(img) for _ in range(batches) for img in next(it)[field]]


@pytest.mark.parametrize("validate", [True, False], ids=["checked-when-built", "checked-when-decoded"])
def test_bad_files_are_counted_and_good_ones_all_arrive(tmp_path, validate):
  expected = bad_folder(tmp_path)
  src = sources.FolderSource(tmp_path, min_size=16, validate=validate)
  ds = pipeline.train_dataset(src, crop=16, global_batch_size=5, seed=0)
  seen = _seen_ids(ds, 6)
  assert set(seen) == set(GOOD)
  assert sorted(seen[:5]) == list(GOOD)  # one epoch of good images comes first, none lost
  summary = skips.summary()
  assert summary["by_reason"] == expected
  paths = {r["path"] for r in summary["records"]}
  assert str(tmp_path / "sub/truncated.jpg") in paths and str(tmp_path / "notes.txt") in paths


def test_bad_pairs_are_counted(tmp_path):
  expected = bad_pairs(tmp_path)
  src = sources.PairedFolderSource(tmp_path)
  assert len(src) == 2
  seen = _seen_ids(pipeline.train_dataset(src, crop=16, global_batch_size=2, seed=0), 2, "degraded")
  assert set(seen) == {1, 2}
  assert skips.summary()["by_reason"] == expected


def test_pair_size_mismatch_found_when_decoding(tmp_path):
  bad_pairs(tmp_path)
  src = sources.PairedFolderSource(tmp_path, validate=False)
  assert len(src) == 3
  seen = _seen_ids(pipeline.train_dataset(src, crop=16, global_batch_size=2, seed=0), 3, "degraded")
  assert set(seen) == {1, 2}
  assert skips.summary()["by_reason"] == {"missing_partner": 2, "size_mismatch": 1}


def test_raise_names_the_file_and_reason(tmp_path):
  write(tmp_path / "good.png", flat(1, 24, 24))
  (tmp_path / "zero.png").write_bytes(b"")
  with pytest.raises(DataError, match=r"zero\.png: zero-byte file"):
    sources.FolderSource(tmp_path, on_error="raise")
  os.remove(tmp_path / "zero.png")
  _cut(write(tmp_path / "t.jpg", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)))
  src = sources.FolderSource(tmp_path, on_error="raise")  # the header check cannot see this one
  ds = pipeline.train_dataset(src, crop=16, global_batch_size=2, seed=0, on_error="raise")
  with pytest.raises(DataError, match=r"t\.jpg: truncated image file"):
    next(iter(ds))


def test_source_without_usable_images_names_the_folder(tmp_path):
  (tmp_path / "a.png").write_bytes(b"")
  (tmp_path / "b.png").write_bytes(b"\x89PNG garbage")
  with pytest.raises(DataError, match=f"{tmp_path}: no usable image \\(2 files listed"):
    sources.FolderSource(tmp_path)
  with pytest.raises(DataError, match="no usable image"):
    sources.PairedFolderSource(tmp_path, "lol")


def test_skip_summary_file(tmp_path):
  data = tmp_path / "data"
  expected = bad_folder(data)
  sources.FolderSource(data, min_size=16)
  out = skips.write_skip_summary(tmp_path / "workdir")
  saved = json.loads((tmp_path / "workdir" / skips.SUMMARY_FILE).read_text())
  assert saved == out and saved["total"] == 6 and saved["by_reason"] == {
      k: v for k, v in expected.items() if k != "truncated"} | {"truncated": 1}  # the PNG: jpeg decodes later


def test_eval_masks_skipped_records(tmp_path):
  bad_folder(tmp_path)
  src = sources.FolderSource(tmp_path, validate=False)
  batches = list(pipeline.eval_dataset(src, crop=16, global_batch_size=4))
  images = np.concatenate([b["image"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  good = sorted(ident(im) for im, m in zip(images, mask) if m)
  assert good == list(GOOD)
  assert int(mask.sum()) == 5 and len(mask) == 12  # 11 image files, padded to 3 batches of 4
