"""Input pipeline throughput: clean/degraded pairs per second at 256² crops from a folder of JPEGs.

Ours: jaxdeg.data (grain) — list + header check, shuffle, Pillow decode, random crop, flip, and
on-the-fly Gaussian noise (jaxdeg.degrade, JAX on the CPU), batches of 16, with 1 and 2
`mp_prefetch` worker processes, and with none (the reader threads of this process alone, which
need no shared memory to hand batches over). Peer: tf.data — list_files -> read_file -> decode_jpeg ->
random_crop -> random flip -> the same noise (sigma = 0.2·U(0, 1), tf.random.normal) -> batch ->
prefetch, AUTOTUNE parallelism (it uses every core). Both read the same 64 JPEGs, written from
the bundled sample photos into a temp folder.
"""
import os
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks import timing

CROP, BATCH, FILES = 256, 16, 64
WORKERS = (1, 2, 0)  # grain worker processes; 0: the reader threads of the training process alone
READ_THREADS = 4  # grain reader threads per process (train_dataset's default)


def write_jpegs(folder, count=FILES, side=384):
  from jaxdeg.data import samples
  rng = np.random.default_rng(0)
  names = samples.names()
  for i in range(count):
    img = Image.fromarray(samples.load(names[i % len(names)]))
    scale = side / min(img.size)
    if scale > 1:
      img = img.resize((int(np.ceil(img.width * scale)), int(np.ceil(img.height * scale))), Image.BICUBIC)
    x, y = rng.integers(0, img.width - side + 1), rng.integers(0, img.height - side + 1)
    img.crop((x, y, x + side, y + side)).save(os.path.join(folder, f"{i:03d}.jpg"), quality=90)


def _chunk_seconds(iterator, warmup, batches, chunks):
  """(seconds for each of `chunks` runs of `batches` batches, after `warmup` batches; the whole
  machine's (all, kernel) CPU milliseconds per pair over those runs, None off Linux)."""
  for _ in range(warmup):  # worker start-up, compilation, first reads
    next(iterator)
  times, cpu_start = [], timing.machine_cpu_seconds()
  for _ in range(chunks):
    start = time.perf_counter()
    for _ in range(batches):
      next(iterator)
    times.append(time.perf_counter() - start)
  cpu_end = timing.machine_cpu_seconds()
  pairs = batches * BATCH * chunks
  cpu = None if cpu_start is None else tuple(1e3 * (b - a) / pairs for a, b in zip(cpu_start, cpu_end))
  return times, cpu


def ours(folder, workers, batches, chunks):
  from jaxdeg.data import pipeline, sources
  noise = {"name": "gaussian_noise", "intensity": [0.0, 1.0]}
  ds = pipeline.train_dataset(pipeline.Input(sources.FolderSource(folder, min_size=CROP), degradations=noise),
                              crop=CROP, global_batch_size=BATCH, seed=0, flip="h", worker_count=workers,
                              read_threads=READ_THREADS)
  it = iter(ds)
  try:
    return _chunk_seconds(it, 3, batches, chunks)
  finally:
    if hasattr(it, "close"):
      it.close()


def tf_data(folder, batches, chunks):
  import tensorflow as tf

  def load(path):
    img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    img = tf.image.random_crop(img, (CROP, CROP, 3))
    img = tf.image.random_flip_left_right(tf.image.convert_image_dtype(img, tf.float32))
    sigma = 0.2 * tf.random.uniform(())
    noisy = tf.clip_by_value(img + sigma * tf.random.normal(tf.shape(img)), 0.0, 1.0)
    return img, noisy

  ds = tf.data.Dataset.list_files(os.path.join(folder, "*.jpg"), shuffle=True, seed=0).repeat()
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return _chunk_seconds(iter(ds), 3, batches, chunks), tf.__version__


def run(quick: bool) -> list[dict]:
  # each side in turn, timed in chunks (live pipelines prefetch in the background, so they are not
  # interleaved batch by batch): the row's median and range are over the chunks
  batches, chunks = (3, 3) if quick else (10, 5)
  with tempfile.TemporaryDirectory() as folder:
    write_jpegs(folder)
    ours_runs = {w: ours(folder, w, batches, chunks) for w in WORKERS}
    (peer, peer_cpu), tf_version = tf_data(folder, batches, chunks)
  cores = os.cpu_count()
  return [{
      "figure": f"pairs/s, {CROP}² crops from {FILES} JPEGs + Gaussian noise, batch {BATCH}, " + _how(w),
      **timing.figures(batches * BATCH, times, peer), "peer_name": f"tf.data {tf_version} (AUTOTUNE)",
      "unit": "pairs/s", "higher_is_better": True,
      "notes": f"{cores} cores; ours degrades with JAX on the CPU, tf.data with tf.random.normal "
               f"in its map threads; {chunks} chunks of {batches} batches per side, one side after the other"
               + _cpu_note(cpu, peer_cpu),
  } for w, (times, cpu) in ours_runs.items()]


def _how(workers):
  return f"{workers} grain worker(s)" if workers else f"no worker process (grain's {READ_THREADS} reader threads)"


def _cpu_note(ours_cpu, peer_cpu):
  # Where the time goes beyond the rate: the kernel share is mostly fresh pages (grain hands every
  # batch over in new shared memory; tf.data reuses its buffers in one process).
  if ours_cpu is None or peer_cpu is None:
    return ""
  return (f"; whole-machine CPU per pair while timed: ours {ours_cpu[0]:.2f} ms ({ours_cpu[1]:.2f} in the "
          f"kernel), tf.data {peer_cpu[0]:.2f} ms ({peer_cpu[1]:.2f} in the kernel)")
