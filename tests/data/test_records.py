"""ArrayRecord pairs: bit-exact round trips, resumable per-process writing, reading in the pipeline."""
import os

import numpy as np
import pytest

from jaxdeg.data import pipeline, records, skips, sources
from tests.data.conftest import gradient


def _meta(i):
  rng = np.random.default_rng(i)
  return dict(type="haze" if i % 2 else "rain", intensity=float(rng.random()), index=i,
              mu=rng.normal(size=8).astype(np.float32), sigma=np.float32(rng.random()),
              source=f"photo_{i}.png", generator="cdd-transfer@step123", scale=np.float64(1 / 3))


def test_pack_round_trips_bit_exactly():
  rng = np.random.default_rng(0)
  cases = [gradient(9, 11), rng.integers(0, 65536, (9, 11, 3), dtype=np.uint64).astype(np.uint16),
           rng.random((9, 11, 3), dtype=np.float32), gradient(9, 11)[..., :1]]
  for clean in cases:
    degraded = clean[::-1].copy()
    out = records.unpack(records.pack(clean, degraded, **_meta(3)))
    for got, want in ((out["clean"], clean), (out["degraded"], degraded)):
      assert got.dtype == want.dtype and got.shape == want.shape
      np.testing.assert_array_equal(got, want)
    meta = out["meta"]
    for k, v in _meta(3).items():
      assert type(meta[k]) is type(v) or isinstance(v, np.ndarray), k
      np.testing.assert_array_equal(meta[k], v)
    assert meta["mu"].dtype == np.float32 and meta["sigma"].dtype == np.float32
    assert out["type"] == "haze"


def test_bad_record_is_a_counted_skip(tmp_path):
  from jaxdeg.data.transforms import Decode
  assert Decode("skip", skips.skip_dir()).map({"packed": b"\x01garbage", "name": "r#0"}) is None
  assert skips.summary()["by_reason"] == {"bad_record": 1}


def _write(writer, items):
  for i in items:
    writer.write(gradient(12, 12, seed=i), 255 - gradient(12, 12, seed=i), **_meta(i))


def test_writer_shards_by_process_and_resumes_without_duplicates(tmp_path):
  total, chunk = 11, 3
  for process in (0, 1):
    w = records.RecordWriter(tmp_path, records_per_chunk=chunk, process_index=process, process_count=2)
    assert w.written == 0 and list(w.pending(total)) == list(range(process, total, 2))
    if process == 0:
      _write(w, list(w.pending(total))[:5])  # "killed" after 5 records: one chunk of 3 completed
      del w
      assert any(f.endswith(".partial") for f in os.listdir(tmp_path))
      w = records.RecordWriter(tmp_path, records_per_chunk=chunk, process_index=0, process_count=2)
      assert w.written == 3 and list(w.pending(total)) == [6, 8, 10]
      assert not any(f.endswith(".partial") for f in os.listdir(tmp_path))
    with w:
      _write(w, w.pending(total))
    again = records.RecordWriter(tmp_path, records_per_chunk=chunk, process_index=process, process_count=2)
    assert again.written == len(range(process, total, 2)) and not list(again.pending(total))
  src = sources.ArrayRecordSource(tmp_path)
  assert len(src) == total
  from jaxdeg.data.transforms import Decode
  decode = Decode("raise", str(tmp_path))
  seen = sorted(int(decode.map(src[i])["meta"]["index"]) for i in range(total))
  assert seen == list(range(total))
  rec = decode.map(src[0])
  i = int(rec["meta"]["index"])
  np.testing.assert_array_equal(rec["clean"], gradient(12, 12, seed=i))
  np.testing.assert_array_equal(rec["meta"]["mu"], _meta(i)["mu"])


def test_array_record_source_in_the_pipeline(tmp_path):
  with records.RecordWriter(tmp_path, records_per_chunk=4) as w:
    _write(w, range(6))
  src = sources.ArrayRecordSource(tmp_path)
  assert src.paired
  ds = pipeline.train_dataset(src, crop=8, global_batch_size=4, seed=0, type_names=("haze", "rain"),
                              meta_fields=("sigma",))
  batch = next(iter(ds))
  np.testing.assert_allclose(batch["degraded"], 1.0 - batch["clean"], atol=1e-6)
  assert set(batch["type"].tolist()) <= {0, 1} and (batch["intensity"] >= 0).all()
  assert batch["sigma"].shape == (4,)


def test_missing_array_record_files_fail_clearly(tmp_path):
  with pytest.raises(Exception, match="no \\*.array_record files"):
    sources.ArrayRecordSource(tmp_path)
