"""Every kind of bad input is skipped and counted by reason (or raises), and the good data all arrives."""
import json
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from jaxdeg.data import pipeline, skips, sources, waiting
from jaxdeg.data.images import decode_image, probe_image
from jaxdeg.errors import DataError
from tests.data.conftest import flat, ident, write
from tests.utils import bomb_png

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


def _truncated_jpegs(root, n=3):
  """JPEGs cut short: their headers pass the check when the source is built, decoding fails."""
  rng = np.random.default_rng(0)
  for i in range(n):
    _cut(write(root / f"t{i}.jpg", rng.integers(0, 256, (64, 64, 3), np.uint8), quality=90))


@pytest.mark.parametrize("case", ["every_file_fails_to_decode", "crop_larger_than_every_image"])
def test_data_that_can_never_form_a_batch_raises_instead_of_hanging(tmp_path, case):
  if case == "every_file_fails_to_decode":
    _truncated_jpegs(tmp_path)
    src, reason = sources.FolderSource(tmp_path), "truncated: 3"
  else:
    for i in range(3):
      write(tmp_path / f"s{i}.png", flat(i, 20, 20))
    src, reason = sources.FolderSource(tmp_path, validate=False), "too_small: 3"
  ds = pipeline.train_dataset(src, crop=32, global_batch_size=2, seed=0)
  start = time.monotonic()
  with pytest.raises(DataError) as e:
    next(iter(ds))
  assert time.monotonic() - start < 10
  assert str(e.value) == (f"no training batch can be formed: all 3 records of {src!r} were tried and skipped "
                          f"({reason}); see data_skips.json in the workdir")


def test_one_usable_record_among_many_bad_ones_is_not_hopeless(tmp_path):
  _truncated_jpegs(tmp_path, 6)
  write(tmp_path / "good.png", flat(7, 24, 24))
  ds = pipeline.train_dataset(sources.FolderSource(tmp_path), crop=16, global_batch_size=4, seed=0)
  assert _seen_ids(ds, 2) == [7] * 8
  assert skips.skipped_records() == 6


def test_a_stop_request_ends_a_wait_for_data(monkeypatch, tmp_path):
  class Slow:  # a source whose records never come
    def __len__(self):
      return 4

    def __getitem__(self, i):
      time.sleep(5)  # longer than the wait below; short enough not to delay the exit of pytest

  monkeypatch.setattr(waiting, "GRACE_S", 0.5)
  it = iter(pipeline.train_dataset(Slow(), crop=16, global_batch_size=2, seed=0, read_threads=1))
  threading.Timer(0.3, waiting.request_stop).start()
  start = time.monotonic()
  try:
    with pytest.raises(waiting.Interrupted, match="stop requested while waiting"):
      next(it)
  finally:
    waiting.clear_stop()
  assert time.monotonic() - start < 3


def _float_tiff(path, values):
  Image.fromarray(np.asarray(values, np.float32), mode="F").save(path)


def test_float_images_are_checked_for_values(tmp_path):
  for i in GOOD:
    write(tmp_path / f"good{i}.png", flat(i, 24, 24))
  nan = np.full((24, 24), 0.5, np.float32)
  nan[3, 4] = np.nan
  _float_tiff(tmp_path / "nan.tif", nan)
  _float_tiff(tmp_path / "inf.tif", np.full((24, 24), np.inf))
  _float_tiff(tmp_path / "scale255.tif", np.linspace(0, 255, 24 * 24).reshape(24, 24))
  _float_tiff(tmp_path / "unit.tif", np.full((24, 24), 0.25))  # float in [0, 1]: a good image
  ds = pipeline.train_dataset(sources.FolderSource(tmp_path), crop=16, global_batch_size=3, seed=0)
  seen = _seen_ids(ds, 4)
  assert set(seen[:6]) == set(GOOD) | {6}  # 0.25 -> red 63.75 -> ident 6; one epoch of good images first
  assert skips.summary()["by_reason"] == {"non_finite": 2, "out_of_range": 1}
  records = {os.path.basename(r["path"]): r["detail"] for r in skips.summary()["records"]}
  assert records["scale255.tif"] == "float values in [0, 255], not [0, 1]"
  assert records["nan.tif"] == "1 NaN/inf pixels"


@pytest.mark.parametrize("validate", [True, False], ids=["checked-when-built", "checked-when-decoded"])
def test_decompression_bomb_and_pixel_cap_are_counted_skips(tmp_path, validate):
  for i in GOOD:
    write(tmp_path / f"good{i}.png", flat(i, 24, 24))
  bomb_png(tmp_path / "bomb.png")  # claims 100000², 10^10 pixels
  write(tmp_path / "big.png", flat(8, 40, 40))  # 1600 pixels: over the cap below
  src = sources.FolderSource(tmp_path, validate=validate, max_pixels=1000)
  ds = pipeline.train_dataset(pipeline.Input(src, max_pixels=1000), crop=16, global_batch_size=5, seed=0)
  # two batches: the whole first epoch has been read (decoding reads ahead at its own pace, so after
  # one batch the last files of the epoch may not have been reached yet)
  seen = _seen_ids(ds, 2)
  assert sorted(seen[:5]) == list(GOOD) and set(seen) == set(GOOD)
  summary = skips.summary()
  assert summary["by_reason"] == {"too_large": 2}
  details = {os.path.basename(r["path"]): r["detail"] for r in summary["records"]}
  assert details["big.png"].startswith("40x40 = 1,600 pixels > the cap of 1,000")
  # without a cap of its own, the default (Pillow's bomb limit) still refuses the bomb from its header
  with pytest.raises(DataError, match="bomb.png: more pixels than the cap"):
    decode_image(str(tmp_path / "bomb.png"))


def test_files_cut_short_are_truncated_not_unreadable(tmp_path):
  noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
  webp = write(tmp_path / "cut.webp", noisy)
  png = write(tmp_path / "cut.png", noisy)
  _cut(webp)
  with open(png, "r+b") as f:
    f.truncate(20)  # inside the IHDR chunk
  for path in (webp, png):
    for read in (probe_image, decode_image):
      with pytest.raises(DataError) as e:
        read(path)
      assert e.value.reason == "truncated", (path, read, e.value)


def test_full_resolution_evaluation_skips_images_smaller_than_ssim_window(tmp_path):
  write(tmp_path / "a.png", flat(1, 20, 30))
  write(tmp_path / "tiny.png", flat(2, 1, 1))
  examples = list(pipeline.eval_examples(sources.FolderSource(tmp_path)))
  assert [ident(e["image"]) for e in examples] == [1]
  (record,) = skips.summary()["records"]
  assert record["reason"] == "too_small" and record["detail"] == "1x1 < 7 (SSIM's 7x7 window)"
