"""grain pipelines: per-process shard, seeded shuffle, decode, aligned crops, mixing, batches.

    source ─► shuffled epochs (a new order each epoch) ─► Decode ─► PairCrop
           ─► Degrade (clean-only sources with degradations, JAX on the CPU) ─► Finalize
    ... one such chain per input ─► MapDataset.mix(weights) ─► this process's block of each
           global batch ─► iterate (drops skipped records) ─► batch ─► mp_prefetch(worker_count)
           ─► images to float32 (after the hand-over: 8-bit crops are a quarter of the bytes)
           ─► to_global (sharded jax.Array on the mesh)

Process i of n takes rows [i·b, (i+1)·b) of every global batch (b = global batch / n), which is
where `to_global` puts them: the global batches do not depend on the process count (except where
records are skipped), and each example's randomness comes from its global position.

An `Input` with degradations makes its degraded images inside the pipeline, in the grain workers
(tasks that degrade on the device, as the restore task does, read clean images and degrade them in
their jitted step).

Every transform is picklable so `mp_prefetch` workers can run it; the iterators are grain
DatasetIterators, checkpointed with the model (get_state/set_state).
"""
import dataclasses
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from jaxdeg.data import skips, waiting
from jaxdeg.data.ordering import ProcessBlocks, shuffled_epochs
from jaxdeg.data.resize import PairResize
from jaxdeg.data.transforms import (FLIPS, CenterCrop, Decode, Degrade, Finalize, PairCrop, images_to_float,
                                   stack_examples)
from jaxdeg.errors import ConfigError, DataError


@dataclasses.dataclass
class Input:
  """One source of a pipeline, with its mixing weight and (for clean images) its degradations."""
  source: Any
  weight: float = 1.0
  degradations: Any = None
  max_pixels: int | None = None  # images above this many pixels are skipped (None: the default cap)

  def __post_init__(self):
    if not self.weight > 0:
      raise ConfigError(f"{self.source!r}: mixing weight must be > 0, got {self.weight}")
    if self.degradations and self.paired_source:
      raise ConfigError(f"{self.source!r} already holds degraded images: remove its 'degradations'")
    self.degrade = Degrade(self.degradations) if self.degradations else None

  @property
  def paired_source(self):
    return bool(getattr(self.source, "paired", False))

  @property
  def paired(self):
    return self.paired_source or self.degrade is not None

  @property
  def type_names(self):
    names = set(getattr(self.source, "type_names", ()))
    if self.degrade is not None:
      names.add(self.degrade.type_name)
    return names


def as_inputs(sources) -> list[Input]:
  many = isinstance(sources, (list, tuple))
  inputs = [s if isinstance(s, Input) else Input(s) for s in (sources if many else [sources])]
  if not inputs:
    raise ConfigError("no data sources given")
  for inp in inputs:
    if len(inp.source) == 0:
      raise DataError(f"data source {inp.source!r} has no examples")
  if len({inp.paired for inp in inputs}) > 1:
    kinds = ", ".join(f"{inp.source!r}: {'pairs' if inp.paired else 'clean images'}" for inp in inputs)
    raise ConfigError(f"cannot mix sources of pairs with sources of clean images ({kinds}); give the "
                      "clean sources 'degradations'")
  return inputs


def type_vocabulary(inputs) -> tuple[str, ...]:
  """Degradation labels the inputs can produce, sorted: 'type' in a batch indexes this."""
  return tuple(sorted(set().union(*(inp.type_names for inp in inputs)) - {""}))


def local_batch_size(global_batch_size: int, process_count=None) -> int:
  pc = jax.process_count() if process_count is None else process_count
  if global_batch_size % pc:
    raise DataError(f"batch size {global_batch_size} is not divisible by the {pc} processes")
  return global_batch_size // pc


def _worker_init(worker_index, worker_count):
  # Degradations in workers run on the CPU: never let a worker claim the accelerator.
  del worker_index, worker_count
  jax.config.update("jax_platforms", "cpu")


def _chain(ds, transforms):
  for t in transforms:
    ds = ds.random_map(t) if isinstance(t, grain.transforms.RandomMap) else ds.map(t)
  return ds


def train_dataset(sources, *, crop: int, global_batch_size: int, seed: int, transforms=(),
                  worker_count: int = 0, flip=False, degraded_key=False, on_error="skip",
                  type_names=None, meta_fields=(), read_threads=4, process_index=None,
                  process_count=None, resize=0) -> grain.IterDataset:
  """Infinite, shuffled, cropped, mixed and batched examples for this process.

  `resize` > 0: every image is first resized whole to resize² (PairResize: Lanczos, pairs get
  meta 'mu'/'sigma'), then cropped; 0 crops the images at their own resolution.

  `sources`: a source, an `Input`, or a list of them (mixed by their weights). Pairs come out as
  {clean, degraded, degraded_key?, type, intensity, source, <meta_fields>}; clean images as
  {image, image_key?}. `transforms` are extra grain transforms on each finished example.
  """
  skips.check_on_error(on_error)
  if flip not in FLIPS:
    raise ConfigError(f"flip={flip!r}: must be '' (none), 'h' (left-right) or 'hv' (and up-down)")
  inputs = as_inputs(sources)
  type_names = tuple(type_names) if type_names else type_vocabulary(inputs)
  batch_size = local_batch_size(global_batch_size, process_count)
  skip_dir = skips.skip_dir()
  chains = []
  for i, inp in enumerate(inputs):
    ds = shuffled_epochs(grain.MapDataset.source(inp.source).seed(seed + i), seed + i)
    ds = ds.map(Decode(on_error, skip_dir, inp.max_pixels, i))
    if resize:
      ds = ds.map(PairResize(resize))
    ds = ds.random_map(PairCrop(crop, flip, degraded_key, on_error, skip_dir))
    if inp.degrade is not None:
      ds = ds.map(inp.degrade)
    ds = ds.map(Finalize(i, type_names, tuple(meta_fields)))
    if transforms:  # they see float32 images, as eval's do
      ds = ds.map(images_to_float)
    chains.append(_chain(ds, transforms))
  ds = chains[0] if len(chains) == 1 else grain.MapDataset.mix(chains, [inp.weight for inp in inputs])
  # Shard last: every example's order and randomness depend on its global position only, so N
  # processes together make exactly the batches one process would (MapDatasets are lazy: each
  # process computes only its own examples).
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if pc > 1:
    ds = ProcessBlocks(ds, pi, pc, global_batch_size)
  read = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(2 * batch_size, 8))
  it = ds.to_iter_dataset(read).batch(batch_size, drop_remainder=True, batch_fn=stack_examples)
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():  # grain's worker options are absl flags; outside absl.app use defaults
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count), worker_init_fn=_worker_init)
  # Images cross from the workers in their files' dtype and become float32 here, in this process.
  it = it.map(images_to_float)
  return waiting.Watched(it, inputs, skip_dir)  # raises, not hangs, when no record is usable


def _with_seed(index, rec):
  # Eval degradations are seeded by the example's index: the same on every run and mesh.
  return None if rec is None else dict(rec, seed=np.uint32(index))


def _eval_chain(inputs, crop, on_error, type_names, meta_fields, transforms, resize=0):
  skip_dir = skips.skip_dir()
  chains = []
  for i, inp in enumerate(inputs):
    ds = grain.MapDataset.source(inp.source).map(Decode(on_error, skip_dir, inp.max_pixels, i))
    if resize:
      ds = ds.map(PairResize(resize))
    ds = ds.map(CenterCrop(crop, on_error, skip_dir)).map_with_index(_with_seed)
    if inp.degrade is not None:
      ds = ds.map(inp.degrade)
    ds = ds.map(Finalize(i, type_names, tuple(meta_fields)))
    chains.append(_chain(ds, transforms))
  return chains[0] if len(chains) == 1 else grain.MapDataset.concatenate(chains)


def eval_dataset(sources, *, crop: int, global_batch_size: int, transforms=(), on_error="skip",
                 type_names=None, meta_fields=(), process_index=None, process_count=None, resize=0):
  """Finite, ordered, centre-cropped batches with each example's global 'index' and a 0/1 'mask'
  (images first resized whole to resize² when `resize` > 0, as in train_dataset).

  Padding examples, and records skipped as unusable, have mask 0. Every process yields the same
  number of batches, or multi-host eval steps (collectives) would hang.
  """
  skips.check_on_error(on_error)
  inputs = as_inputs(sources)
  type_names = tuple(type_names) if type_names else type_vocabulary(inputs)
  full = _eval_chain(inputs, crop, on_error, type_names, meta_fields, transforms, resize)
  pi = jax.process_index() if process_index is None else process_index
  bs = local_batch_size(global_batch_size, process_count)
  n, template = len(full), None
  for start in range(0, n, global_batch_size):
    # This process's block of the global batch, as in training: the same batches on any process count.
    index = [start + pi * bs + j for j in range(bs)]
    items = [full[i] if i < n else None for i in index]
    mask = np.array([x is not None for x in items], np.float32)
    if template is None:
      template = next((x for x in items if x is not None), None) or _first_example(full)
    items = [x if x is not None else jax.tree.map(np.zeros_like, template) for x in items]
    batch = {k: np.stack([x[k] for x in items]) for k in template}
    batch["index"], batch["mask"] = np.minimum(np.array(index, np.int32), n - 1), mask
    yield batch


def eval_examples(sources, *, transforms=(), on_error="skip", type_names=None, meta_fields=()):
  """Every eval example at its own size (no crop), one at a time, in eval_dataset's order and with
  the same 'index' (so the same seeded degradations); skipped records are left out.

  For full-resolution evaluation. Every process gets every example: sizes differ, so examples do
  not stack into global batches.
  """
  skips.check_on_error(on_error)
  inputs = as_inputs(sources)
  type_names = tuple(type_names) if type_names else type_vocabulary(inputs)
  full = _eval_chain(inputs, None, on_error, type_names, meta_fields, transforms)
  for i in range(len(full)):
    example = full[i]
    if example is not None:
      yield dict(example, index=np.int32(i))


def _first_example(full):
  for i in range(len(full)):
    if full[i] is not None:
      return full[i]
  raise DataError("evaluation data: every record was skipped (see data_skips.json)")


def to_global(batch, sharding):
  """Process-local numpy batch -> global jax.Array batch sharded over the mesh's data axes."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
