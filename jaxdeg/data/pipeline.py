"""grain pipelines: seeded shuffle, per-process shard, crop, batch, prefetch; global jax.Arrays.

Every transform is a picklable class so `mp_prefetch` workers can run it.
"""
import dataclasses

import grain
import jax
import numpy as np

from jaxdeg.errors import DataError


@dataclasses.dataclass(frozen=True)
class RandomCrop(grain.transforms.RandomMap):
  """Random `size`² crop of example['image'] (uint8 or float) -> float32 in [0, 1]."""
  size: int

  def random_map(self, example, rng: np.random.Generator):
    img = example["image"]
    h, w = img.shape[:2]
    if h < self.size or w < self.size:
      raise DataError(f"{example.get('name', 'image')}: {h}x{w} is smaller than the crop {self.size}")
    y = rng.integers(0, h - self.size + 1)
    x = rng.integers(0, w - self.size + 1)
    return {"image": _to_float(img[y:y + self.size, x:x + self.size])}


@dataclasses.dataclass(frozen=True)
class CenterCrop(grain.transforms.Map):
  """Deterministic centre `size`² crop -> float32 in [0, 1] (evaluation)."""
  size: int

  def map(self, example):
    img = example["image"]
    h, w = img.shape[:2]
    s = min(self.size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return {"image": _to_float(img[y:y + s, x:x + s])}


def _to_float(img):
  img = np.asarray(img)
  return (img.astype(np.float32) / 255.0) if img.dtype == np.uint8 else img.astype(np.float32)


def process_shard(ds: grain.MapDataset) -> grain.MapDataset:
  """This process's slice of a dataset (disjoint across processes, together covering it)."""
  return ds[jax.process_index()::jax.process_count()]


def local_batch_size(global_batch_size: int) -> int:
  if global_batch_size % jax.process_count():
    raise DataError(f"batch size {global_batch_size} is not divisible by the {jax.process_count()} processes")
  return global_batch_size // jax.process_count()


def train_dataset(source, *, crop: int, global_batch_size: int, seed: int, transforms=(),
                  worker_count: int = 0) -> grain.IterDataset:
  """Infinite, shuffled (reshuffled every epoch), cropped and batched examples for this process."""
  if len(source) == 0:
    raise DataError(f"data source {source!r} has no examples")
  ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
  ds = process_shard(ds).random_map(RandomCrop(crop))
  for t in transforms:
    ds = ds.random_map(t) if isinstance(t, grain.transforms.RandomMap) else ds.map(t)
  ds = ds.batch(local_batch_size(global_batch_size), drop_remainder=True)
  it = ds.to_iter_dataset()
  if worker_count > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it


def eval_dataset(source, *, crop: int, global_batch_size: int, transforms=()):
  """Finite, ordered, centre-cropped batches with each example's global 'index' and a 0/1 'mask'.

  Padding examples have mask 0. Every process yields the same number of batches, or
  multi-host eval steps (collectives) would hang.
  """
  full = grain.MapDataset.source(source).map(CenterCrop(crop))
  for t in transforms:
    full = full.map(t)
  indices = list(range(len(full)))[jax.process_index()::jax.process_count()]
  if not indices:
    indices = [0]  # nothing left for this process: one fully masked batch
    present = 0
  else:
    present = len(indices)
  bs = local_batch_size(global_batch_size)
  per_process = -(-len(full) // jax.process_count())
  for start in range(0, per_process, bs):
    chunk = indices[start:start + bs]
    mask = np.zeros((bs,), np.float32)
    mask[:max(0, min(len(chunk), present - start))] = 1.0
    chunk = chunk + [indices[-1]] * (bs - len(chunk))
    items = [dict(full[i], index=np.int32(i)) for i in chunk]
    batch = {k: np.stack([it[k] for it in items]) for k in items[0]}
    batch["mask"] = mask
    yield batch


def to_global(batch, sharding):
  """Process-local numpy batch -> global jax.Array batch sharded over the mesh's data axes."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
