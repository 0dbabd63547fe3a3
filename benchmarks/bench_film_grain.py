"""AV1 film grain throughput: jaxdeg (jit + vmap, RGB in and out) vs dav1d's grain synthesis.

dav1d's cost is isolated as (decode time with --filmgrain 1) - (with --filmgrain 0) on the same
clip, single-threaded; jaxdeg's includes its RGB <-> YCbCr conversion.
"""
import pathlib
import shutil
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from skimage import data

from jaxdeg import degrade
from jaxdeg.degrade.film_grain_params import GrainTableSegment, preset, write_grain_table
from jaxdeg.degrade.jpeg import rgb_to_ycbcr

SIZE = 256


def _dav1d_grain_seconds_per_frame(frames):
  if not (shutil.which("aomenc") and shutil.which("dav1d")):
    return None, "aomenc/dav1d missing"
  run = subprocess.run(["dav1d", "--version"], capture_output=True, text=True)
  version = (run.stdout or run.stderr).strip()
  img = data.astronaut()[::512 // SIZE, ::512 // SIZE].astype(np.float32)
  ycc = np.asarray(rgb_to_ycbcr(jnp.asarray(img)))
  y = np.clip(np.round(ycc[..., 0]), 0, 255).astype(np.uint8)
  c = np.clip(np.round(ycc[..., 1:].reshape(SIZE // 2, 2, SIZE // 2, 2, 2).mean((1, 3))), 0, 255)
  c = c.astype(np.uint8)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    with open(tmp / "in.y4m", "wb") as f:
      f.write(f"YUV4MPEG2 W{SIZE} H{SIZE} F25:1 Ip A1:1 C420jpeg\n".encode())
      for i in range(frames):
        f.write(b"FRAME\n" + np.roll(y, i, 1).tobytes() + c[..., 0].tobytes() + c[..., 1].tobytes())
    write_grain_table(tmp / "g.tbl", [GrainTableSegment(0, 10**12, preset(2))])
    subprocess.run(["aomenc", f"--limit={frames}", "--cpu-used=6", "--end-usage=q", "--cq-level=10",
                    f"--film-grain-table={tmp / 'g.tbl'}", "-o", str(tmp / "o.ivf"), str(tmp / "in.y4m")],
                   capture_output=True, check=True)
    times = {}
    for on in (0, 1):
      best = float("inf")
      for _ in range(3):
        t = time.perf_counter()
        subprocess.run(["dav1d", "-q", "--threads", "1", "-i", str(tmp / "o.ivf"), "-o", str(tmp / "o.y4m"),
                        "--filmgrain", str(on)], capture_output=True, check=True)
        best = min(best, time.perf_counter() - t)
      times[on] = best
  return (times[1] - times[0]) / frames, f"dav1d {version} (1 thread)"


def run(quick: bool):
  frames = 16 if quick else 64
  batch = 8 if quick else 32
  imgs = jnp.broadcast_to(jnp.asarray(data.astronaut()[::2, ::2] / 255.0, jnp.float32), (batch, SIZE, SIZE, 3))
  fn = jax.jit(lambda k, x: degrade.apply(k, x, "film_grain", 0.5)[0])
  jax.block_until_ready(fn(jax.random.key(0), imgs))
  reps = 3 if quick else 10
  t = time.perf_counter()
  for i in range(reps):
    jax.block_until_ready(fn(jax.random.key(i), imgs))
  ours = batch * reps / (time.perf_counter() - t)
  per_frame, peer_name = _dav1d_grain_seconds_per_frame(frames)
  peer = None if per_frame is None or per_frame <= 0 else 1.0 / per_frame
  return [{
    "figure": f"AV1 film grain synthesis, {SIZE}² 4:2:0, preset 2",
    "ours": ours, "peer": peer, "peer_name": peer_name, "unit": "frames/s", "higher_is_better": True,
    "notes": f"jaxdeg: batch {batch} per jit call, RGB in/out; dav1d: grain-on minus grain-off decode time",
  }]
