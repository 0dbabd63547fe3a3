"""The `ldm` task's latent cache: pairs encoded once by the frozen VAE, so UNet training skips it.

    python -m jaxdeg.main --config=configs/gendeg_ldm.py --workdir=runs/ldm --mode=cache_latents \\
        --config.data.latent_cache=runs/latents --config.data.latent_cache_batches=2000
    python -m jaxdeg.main --config=configs/gendeg_ldm.py --workdir=runs/ldm \\
        --config.data.latent_cache=runs/latents                         # trains from the cache

Writing draws `latent_cache_batches` training batches exactly as training would (same sources,
crops, flips and, for clean images, procedural degradations from the batch's key), and stores per
example what the train step needs from the VAE: the clean image's posterior mean (unscaled: the
image condition), the degraded image's posterior mean and log-variance (the step still draws its
own posterior sample, so the target keeps its noise), the measured μ/σ and the model's type id.
Records are ArrayRecord (`jaxdeg.data.records`: the clean crop as PNG, the rest as exact arrays in
the metadata), one series per process, resumable. A cache is tied to its VAE: the VAE's run and
step are recorded and training refuses a cache made with other latent shapes.
"""
import grain
import jax
import numpy as np
from absl import logging

from jaxdeg.data import records, sources
from jaxdeg.data.ordering import ProcessBlocks, shuffled_epochs
from jaxdeg.data.pipeline import local_batch_size
from jaxdeg.errors import ConfigError

LATENT_FIELDS = ("clean_latent", "degraded_mean", "degraded_logvar")
PREFIX = "latents"


class DecodeLatents(grain.transforms.Map):
  """Packed record -> {clean_latent, degraded_mean, degraded_logvar, mu, sigma, type} arrays."""

  def map(self, raw):
    meta = records.unpack(raw["packed"], raw["name"])["meta"]
    out = {k: np.asarray(meta[k], np.float32) for k in LATENT_FIELDS}
    out.update(mu=np.float32(meta["mu"]), sigma=np.float32(meta["sigma"]), type=np.int32(meta["type_id"]))
    return out


def check_cache(folder, latent_shape, vocabulary):
  """The cache's source, after checking its first record against the model."""
  try:
    source = sources.ArrayRecordSource(folder)
  except Exception as e:  # noqa: BLE001  (missing folder, no files, no records: say which cache)
    raise ConfigError(f"config.data.latent_cache={folder}: {e}") from None
  meta = records.unpack(source[0]["packed"], source[0]["name"])["meta"]
  missing = [k for k in LATENT_FIELDS + ("mu", "sigma", "type_id") if k not in meta]
  if missing:
    raise ConfigError(f"config.data.latent_cache={folder}: records lack {missing}; not a latent cache "
                      "(write one with --mode=cache_latents)")
  shape = tuple(np.shape(meta["clean_latent"]))
  if shape != tuple(latent_shape):
    raise ConfigError(f"config.data.latent_cache={folder}: latents of shape {shape}, but this model trains on "
                      f"{tuple(latent_shape)} (crop / VAE mismatch; rewrite the cache)")
  if tuple(meta.get("vocabulary", ())) != tuple(vocabulary):
    raise ConfigError(f"config.data.latent_cache={folder}: type ids were written for {meta.get('vocabulary')}, "
                      f"the model's types are {tuple(vocabulary)}")
  return source


def latent_dataset(source, *, global_batch_size, seed, process_index=None, process_count=None):
  """Infinite, shuffled, batched cache records for this process (checkpointable, as train data)."""
  ds = shuffled_epochs(grain.MapDataset.source(source).seed(seed), seed).map(DecodeLatents())
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if pc > 1:
    ds = ProcessBlocks(ds, pi, pc, global_batch_size)
  batch = local_batch_size(global_batch_size, pc)
  read = grain.ReadOptions(num_threads=4, prefetch_buffer_size=max(2 * batch, 8))
  return ds.to_iter_dataset(read).batch(batch, drop_remainder=True)


def write_cache(task, folder, num_batches, vae_description="", log=logging.info):
  """Encodes `num_batches` training batches of `task` (an LdmTask) into `folder`; resumable.
  Returns {'batches', 'records', 'already_done'}."""
  if num_batches < 1:
    raise ConfigError(f"config.data.latent_cache_batches={num_batches}: must be ≥ 1")
  vae_params = jax.device_put(task._load_vae())
  encode = jax.jit(task.cache_entries)
  per_batch = local_batch_size(task.config.train.batch_size)
  # chunks of whole batches: after an interruption the complete chunks hold whole batches only
  # (the partial chunk is deleted by RecordWriter), so batch `done` is the first to redo
  writer = records.RecordWriter(folder, prefix=PREFIX, records_per_chunk=per_batch * max(1, 1024 // per_batch))
  done = writer.written // per_batch
  it = iter(task.train_data())
  base = jax.random.PRNGKey(task.config.seed + 7)
  for b in range(num_batches):
    batch = next(it)  # the data stream is replayed from its start, so batch b is always the same
    if b < done:
      continue
    out = jax.device_get(encode(vae_params, jax.random.fold_in(base, b), batch))
    for i in range(per_batch):
      clean = np.round(np.clip(out["clean"][i], 0, 1) * 255).astype(np.uint8)
      writer.write(clean, **{k: out[k][i] for k in LATENT_FIELDS}, mu=float(out["mu"][i]),
                   sigma=float(out["sigma"][i]), type_id=int(out["type"][i]),
                   vocabulary=list(task.context.types), batch=b, vae=vae_description)
    if (b + 1) % 50 == 0 or b + 1 == num_batches:
      log(f"latent cache: {b + 1}/{num_batches} batches")
  writer.close()
  return {"batches": num_batches, "records": writer.written, "already_done": done}
