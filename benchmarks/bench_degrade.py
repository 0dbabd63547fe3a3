"""Procedural degradation throughput: jaxdeg (one jit call per batch of 32, 256², vmap) against
albumentations 2.0.8 and a BasicSR-style numpy/OpenCV Real-ESRGAN pipeline, same photos, same run.

Units are pairs/s per CPU core: the whole measurement runs in a child process pinned to one core
(both sides; OpenCV set to one thread), as one data-loader worker would run. albumentations gets
uint8 images (its fast path), jaxdeg float32 in [0, 1] (its format). Each side is timed after
warm-up/compilation, in interleaved turns (benchmarks/timing.py): the median, with the range.
"""
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks import timing

SIZE, BATCH = 256, 32
INTENSITY = 0.5  # jaxdeg setting; the albumentations transforms run with their defaults
TARGET = 1.0  # at least the peer's pace on the same core
PER_IMAGE = ((np.arange(BATCH) + 0.5) / BATCH).astype(np.float32)  # the per-image row: mean 0.5


def photos():
  """32 distinct 256² crops of the scikit-image sample photos, float32 in [0, 1]."""
  from skimage import data, transform
  out = []
  for name in ("astronaut", "chelsea", "coffee", "rocket"):
    img = getattr(data, name)().astype(np.float32) / 255.0
    h, w = img.shape[:2]
    side = min(h, w)
    for i in range(BATCH // 4):
      s = int(side * (0.6 + 0.05 * i))
      y, x = (h - s) * i // 8, (w - s) * (7 - i) // 8
      out.append(transform.resize(img[y:y + s, x:x + s], (SIZE, SIZE), anti_aliasing=True).astype(np.float32))
  return np.stack(out)


def _ours(name, imgs, per_image=False):
  """One jitted call per batch; per_image: an intensity vector of BATCH values (PER_IMAGE), as the
  restore task applies degradations, instead of one scalar intensity."""
  import jax
  from jaxdeg import degrade
  if per_image:
    fn = jax.jit(lambda k, x, t: degrade.apply(k, x, name, t)[0])
    t = jax.device_put(PER_IMAGE)
  else:
    fn = jax.jit(lambda k, x, t: degrade.apply(k, x, name, INTENSITY)[0])
    t = None
  x = jax.device_put(imgs)
  jax.block_until_ready(fn(jax.random.key(0), x, t))
  counter = iter(range(1, 10**6))
  return lambda: jax.block_until_ready(fn(jax.random.key(next(counter)), x, t))


def _albumentations(transform, imgs):
  u8 = [np.uint8(np.round(im * 255)) for im in imgs]
  return lambda: [transform(image=im)["image"] for im in u8]


def _basicsr(imgs):
  from benchmarks.peers import basicsr_realesrgan
  rng = np.random.default_rng(0)
  return lambda: [basicsr_realesrgan.degrade(rng, im) for im in imgs]


def peers():
  """(jaxdeg name, peer name, peer factory) for every type with a peer."""
  import albumentations as A
  from jaxdeg import degrade
  version = A.__version__
  rows = [
      ("rain", f"albumentations {version} RandomRain", lambda: A.RandomRain(p=1.0)),
      ("snow", f"albumentations {version} RandomSnow", lambda: A.RandomSnow(p=1.0)),
      ("haze", f"albumentations {version} RandomFog", lambda: A.RandomFog(p=1.0)),
      ("motion_blur", f"albumentations {version} MotionBlur", lambda: A.MotionBlur(p=1.0)),
      ("gaussian_noise", f"albumentations {version} GaussNoise", lambda: A.GaussNoise(p=1.0)),
  ]
  if "jpeg" in degrade.available():
    rows.append(("jpeg", f"albumentations {version} ImageCompression", lambda: A.ImageCompression(p=1.0)))
  return rows


def run(quick: bool):
  """Measure in a child pinned to one core, so "per core" means exactly that on any machine."""
  core = sorted(os.sched_getaffinity(0))[-1]
  cmd = [sys.executable, "-m", "benchmarks.bench_degrade", "--core", str(core)] + (["--quick"] if quick else [])
  child = subprocess.run(cmd, capture_output=True, text=True)
  if child.returncode:
    raise RuntimeError(f"bench_degrade child failed:\n{child.stderr[-4000:]}")
  return json.loads(child.stdout.strip().splitlines()[-1])


def measure(quick):
  import cv2
  cv2.setNumThreads(1)
  imgs = photos()
  reps = 3 if quick else 7
  results = []
  cases = [(name, peer_name, lambda f=factory: _albumentations(f(), imgs)) for name, peer_name, factory in peers()]
  cases.append(("realesrgan", "BasicSR-style numpy/OpenCV second-order pipeline (benchmarks/peers)",
                lambda: _basicsr(imgs)))
  for name, peer_name, make_peer in cases:
    ours_fn, vec_fn, peer_fn = _ours(name, imgs), _ours(name, imgs, per_image=True), make_peer()
    peer_fn()  # warm-up (imports, caches)
    t_ours, t_vec, t_peer = timing.interleaved(ours_fn, vec_fn, peer_fn, reps=reps)
    results.append({
        "figure": f"{name} pairs/s per core, {SIZE}², batch {BATCH}",
        **timing.figures(BATCH, t_ours, t_peer), "peer_name": peer_name, "unit": "pairs/s/core",
        "higher_is_better": True, "target": TARGET,
        "notes": f"both on one pinned core; jaxdeg at intensity {INTENSITY}, peer at its defaults",
    })
    results.append({
        "figure": f"{name} pairs/s per core, {SIZE}², batch {BATCH}, per-image intensities",
        **timing.figures(BATCH, t_vec, t_peer), "peer_name": peer_name, "unit": "pairs/s/core",
        "higher_is_better": True, "target": TARGET,
        "notes": "both on one pinned core; jaxdeg: one jitted call on the batch with an intensity vector "
                 f"({PER_IMAGE[0]:.3f}..{PER_IMAGE[-1]:.3f}, mean {PER_IMAGE.mean():.2f}) as the restore task applies it; peer at its defaults",
    })
    print(f"{name}: ours {results[-2]['ours']:.1f} per-image {results[-1]['ours']:.1f} "
          f"peer {results[-1]['peer']:.1f}", file=sys.stderr, flush=True)
  return results


if __name__ == "__main__":
  # Pin before JAX or OpenCV start their thread pools, which then size themselves to this core.
  os.sched_setaffinity(0, {int(sys.argv[sys.argv.index("--core") + 1])})
  from benchmarks.run import machine_description
  from jaxdeg import host_memory
  # mallopt is per process: this child sets it itself, as benchmarks.run and jaxdeg's trainer do.
  reused_memory = host_memory.reuse_freed_memory()
  rows = measure("--quick" in sys.argv)
  machine = machine_description(reused_memory)
  print(json.dumps([dict(r, machine=machine) for r in rows]))
