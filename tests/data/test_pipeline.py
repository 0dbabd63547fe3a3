"""Determinism, per-process shards, checkpoint/resume (also with worker processes), mixing, crops."""
import grain
import jax
import numpy as np
import pytest
from PIL import Image

from jaxdeg.data import pipeline, skips, sources
from jaxdeg.data.pipeline import Input
from tests.data.conftest import flat, gradient, ident, write


@pytest.fixture
def folder(tmp_path):
  for i in range(1, 11):
    write(tmp_path / "clean" / f"{i:02d}.png", flat(i, 20, 20))
  return sources.FolderSource(tmp_path / "clean")


def _take(ds, n):
  it = iter(ds)
  return [next(it) for _ in range(n)]


def _equal(a, b):
  return jax.tree.all(jax.tree.map(np.array_equal, a, b))


def test_same_seed_same_batches(folder):
  kwargs = dict(crop=8, global_batch_size=4, flip="hv")
  one, two = (_take(pipeline.train_dataset(folder, seed=3, **kwargs), 5) for _ in range(2))
  other = _take(pipeline.train_dataset(folder, seed=4, **kwargs), 5)
  assert _equal(one, two)
  assert not _equal(one, other)


def test_process_shards_are_disjoint_and_cover(folder):
  count, seen = 3, []
  for index in range(count):
    ds = pipeline.train_dataset(folder, crop=8, global_batch_size=count, seed=0, process_index=index,
                                process_count=count)
    share = len(range(index, len(folder), count))  # this process's epoch, one example per batch
    seen.append({ident(b["image"][0]) for b in _take(ds, share)})
  assert all(len(s) == len(range(i, 10, count)) for i, s in enumerate(seen))
  assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
  assert set().union(*seen) == set(range(1, 11))


def test_processes_together_make_the_single_process_batches(folder):
  kwargs = dict(crop=8, global_batch_size=4, seed=0, flip="hv")
  single = _take(pipeline.train_dataset(folder, **kwargs), 4)
  for index in (0, 1):
    local = _take(pipeline.train_dataset(folder, process_index=index, process_count=2, **kwargs), 4)
    assert _equal(local, [jax.tree.map(lambda x: x[2 * index:2 * index + 2], b) for b in single])


def test_monkeypatched_process_index_shards_too(folder, monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  firsts = []
  for index in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    ds = pipeline.train_dataset(folder, crop=8, global_batch_size=2, seed=0)
    firsts.append({ident(b["image"][0]) for b in _take(ds, 5)})
  assert firsts[0] | firsts[1] == set(range(1, 11)) and not firsts[0] & firsts[1]


def test_resume_mid_epoch_equals_uninterrupted(folder):
  ds = pipeline.train_dataset(folder, crop=8, global_batch_size=3, seed=0, flip=True)
  grain.experimental.assert_equal_output_after_checkpoint(grain.experimental.LimitIterDataset(ds, 5))
  it = iter(ds)
  straight = [next(it) for _ in range(7)]
  it = iter(ds)
  for _ in range(2):  # mid-epoch: 6 of 10 examples used
    next(it)
  state = it.get_state()
  resumed = iter(ds)
  resumed.set_state(state)
  assert _equal(straight[2:], [next(resumed) for _ in range(5)])


def test_resume_with_two_workers_and_worker_skip_counts(tmp_path):
  for i in range(1, 9):
    write(tmp_path / f"{i}.png", flat(i, 20, 20))
  noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
  path = write(tmp_path / "truncated.jpg", noisy, quality=90)
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])
  src = sources.FolderSource(tmp_path)  # the truncated JPEG passes the header check
  spec = {"name": "gaussian_noise", "intensity": [0.1, 0.3]}
  ds = pipeline.train_dataset(Input(src, degradations=spec), crop=8, global_batch_size=2, seed=0,
                              worker_count=2)
  it = iter(ds)
  first = [next(it) for _ in range(3)]
  state = it.get_state()  # mid-epoch: 6 of 8 images used
  straight = [next(it) for _ in range(5)]
  it.close()
  resumed = iter(ds)
  resumed.set_state(state)
  assert _equal(straight, [next(resumed) for _ in range(5)])
  resumed.close()
  # counted inside a worker process, reported here
  assert skips.summary()["by_reason"] == {"truncated": 1}
  assert {ident(c) for b in first + straight for c in b["clean"]} == set(range(1, 9))


def test_weighted_mixing(tmp_path):
  for i in range(1, 4):
    write(tmp_path / "a" / f"{i}.png", flat(i, 12, 12))
    write(tmp_path / "b" / f"{i}.png", flat(10 + i, 12, 12))
  a, b = sources.FolderSource(tmp_path / "a"), sources.FolderSource(tmp_path / "b")
  spec = {"name": "gaussian_noise", "intensity": 0.0}
  ds = pipeline.train_dataset([Input(a, 3.0, spec), Input(b, 1.0, spec)], crop=8, global_batch_size=8, seed=0)
  source = np.concatenate([x["source"] for x in _take(ds, 25)])
  assert abs(np.mean(source == 0) - 0.75) < 0.03
  ids = np.concatenate([[ident(c) for c in x["clean"]] for x in _take(ds, 2)])
  assert all((i < 10) == (s == 0) for i, s in zip(ids, source[:16]))


def test_pair_crops_are_aligned_and_key_crop_is_elsewhere(tmp_path):
  clean = gradient(40, 48, seed=1)
  write(tmp_path / "clean/x.png", clean)
  write(tmp_path / "degraded/x.png", 255 - clean)
  src = sources.PairedFolderSource(tmp_path, type_name="invert")
  ds = pipeline.train_dataset(src, crop=16, global_batch_size=4, seed=0, flip="hv", degraded_key=True)
  for batch in _take(ds, 3):
    np.testing.assert_allclose(batch["degraded"], 1.0 - batch["clean"], atol=1e-6)
    assert not np.array_equal(batch["degraded_key"], batch["degraded"])
    assert batch["type"].tolist() == [0] * 4 and np.isnan(batch["intensity"]).all()
  degraded = (255 - clean) / 255.0
  key = batch["degraded_key"][0]
  windows = np.lib.stride_tricks.sliding_window_view(degraded, (16, 16, 3))[..., 0, :, :, :]
  flips = [key, key[:, ::-1], key[::-1], key[::-1, ::-1]]
  assert any(np.isclose(windows, f, atol=1e-6).all(axis=(-3, -2, -1)).any() for f in flips)


def test_on_the_fly_degradation_on_cpu(folder):
  spec = [{"name": "gaussian_blur", "intensity": [0.2, 0.6]}, {"name": "gaussian_noise", "intensity": 0.5}]
  ds = pipeline.train_dataset(Input(folder, degradations=spec), crop=8, global_batch_size=4, seed=0,
                              degraded_key=True)
  (batch,) = _take(ds, 1)
  assert set(batch) == {"clean", "degraded", "degraded_key", "type", "intensity", "source"}
  noise = batch["degraded"] - batch["clean"]
  assert 0.05 < noise.std() < 0.15  # sigma 0.1 (blur is a no-op on a flat image)
  assert ((0.2 <= batch["intensity"]) & (batch["intensity"] <= 0.6)).all()
  assert batch["type"].tolist() == [0] * 4  # vocabulary: ('gaussian_blur+gaussian_noise',)
  key_noise = batch["degraded_key"] - batch["clean"]  # flat images: the key crop has the same clean
  assert abs(key_noise.std() - noise.std()) < 0.02


def test_global_batches_are_sharded_over_the_mesh(folder):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  (batch,) = _take(pipeline.train_dataset(folder, crop=8, global_batch_size=8, seed=0), 1)
  out = pipeline.to_global(batch, sharding)
  assert out["image"].shape == (8, 8, 8, 3) and len(out["image"].addressable_shards) == 8
  np.testing.assert_array_equal(np.asarray(out["image"]), batch["image"])


def test_eval_batches_split_into_process_blocks(folder):
  single = list(pipeline.eval_dataset(folder, crop=8, global_batch_size=4))
  assert len(single) == 3 and single[-1]["mask"].tolist() == [1, 1, 0, 0]
  assert sorted(int(i) for b in single for i, m in zip(b["index"], b["mask"]) if m) == list(range(10))
  for index in (0, 1):
    local = list(pipeline.eval_dataset(folder, crop=8, global_batch_size=4, process_index=index, process_count=2))
    assert _equal(local, [jax.tree.map(lambda x: x[2 * index:2 * index + 2], b) for b in single])


@pytest.mark.parametrize("depths", [(8, 16), (16, 16), (8, 8)])
def test_training_images_reach_the_batch_as_their_files_scaled_to_unit_floats(tmp_path, depths):
  # Crops cross the worker hand-over in the file's dtype and become float32 after it: a batch
  # mixing 8- and 16-bit files must keep each file's own scale. Reference: Pillow's pixel values
  # divided in float64, then rounded to float32.
  rng = np.random.default_rng(0)
  expected = []
  for i, depth in enumerate(depths):
    if depth == 8:
      arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
      ref = arr / 255.0
    else:
      arr = rng.integers(0, 65536, (8, 8), dtype=np.uint16)
      ref = np.repeat(arr[..., None] / 65535.0, 3, axis=-1)
    path = write(tmp_path / f"{i}.png", arr)
    assert Image.open(path).mode == ("RGB" if depth == 8 else "I;16")
    expected.append(ref.astype(np.float32))
  ds = pipeline.train_dataset(sources.FolderSource(tmp_path), crop=8, global_batch_size=2, seed=0)
  (batch,) = _take(ds, 1)
  assert batch["image"].dtype == np.float32
  matches = sorted(tuple(np.array_equal(image, e) for e in expected) for image in batch["image"])
  assert matches == [(False, True), (True, False)]  # each file once, exactly (order is shuffled)
