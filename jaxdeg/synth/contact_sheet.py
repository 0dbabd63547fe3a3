"""A contact sheet of a synthesis run: one row per degradation type (sorted by name), each with the
first `per_type` clean | degraded pairs of that type from the written shards."""
import os

import numpy as np

from jaxdeg.data import images as image_io
from jaxdeg.data import records

FILE = "synthesis_pairs.png"


def pairs_by_type(paths, per_type):
  """{type: [(clean, degraded, meta), ...]} with the first `per_type` records of each type, in
  file order (records of the same job order across processes: file names sort by process)."""
  import grain
  out = {}
  source = grain.sources.ArrayRecordDataSource(sorted(paths))
  for i in range(len(source)):
    rec = records.unpack(source[i], f"record {i}")
    chosen = out.setdefault(rec["type"], [])
    if len(chosen) < per_type and "degraded" in rec:
      chosen.append((rec["clean"], rec["degraded"], rec["meta"]))
  return out


def write(workdir, per_type=3, size=128):
  """Writes `workdir/synthesis_pairs.png` from the run's shards; returns its path (None: no records)."""
  paths = [os.path.join(workdir, f) for f in os.listdir(workdir) if f.endswith(".array_record")]
  if not paths:
    return None
  rows = []
  for _, chosen in sorted(pairs_by_type(paths, per_type).items()):
    row = []
    for clean, degraded, _ in chosen:
      row += [_fit(clean, size), _fit(degraded, size)]
    rows.append(row)
  path = os.path.join(workdir, FILE)
  image_io.write_image(path, image_io.make_grid(rows))
  return path


def _fit(image, size):
  """uint8 (H, W, 3) -> float (size, size, 3): nearest-neighbour resample, so pixels stay honest."""
  img = np.asarray(image, np.float32) / 255.0
  ys = (np.arange(size) * img.shape[0] / size).astype(int)
  xs = (np.arange(size) * img.shape[1] / size).astype(int)
  return img[ys][:, xs]
