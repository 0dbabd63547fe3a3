"""ArrayRecord files of pairs written by jaxdeg (synthesised pairs), and their record format.

A record is a msgpack map: {'v': 1, 'clean': image, 'degraded': image, 'meta': {...}}. Images are
lossless: uint8 as PNG, anything else (uint16, float32) as raw bytes with dtype and shape. Metadata
values may be numbers, strings, lists or numpy arrays/scalars (kept with their dtype, bit-exact);
the usual keys are type, intensity, mu, sigma, source and generator.

`RecordWriter` writes this process's share into `<prefix>-p<process>-<chunk>.array_record`. A chunk
is written as `*.partial` and renamed when full or closed, so after a crash the writer finds the
complete chunks, counts their records (`written`), deletes the partial one, and the caller resumes
at `pending(total)`: nothing is written twice.
"""
import os
import re

import jax
import msgpack
import numpy as np

from jaxdeg.data.images import decode_image, encode_png
from jaxdeg.data.skips import BadRecord

VERSION = 1
_ARRAY = "__nd__"


def _encode_value(v):
  if isinstance(v, (np.ndarray, np.generic)):
    a = np.asarray(v)
    return {_ARRAY: a.dtype.str, "shape": list(a.shape), "data": np.ascontiguousarray(a).tobytes()}
  if isinstance(v, dict):
    return {str(k): _encode_value(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [_encode_value(x) for x in v]
  return v


def _decode_value(v):
  if isinstance(v, dict):
    if _ARRAY in v:
      a = np.frombuffer(v["data"], dtype=np.dtype(v[_ARRAY])).reshape(v["shape"]).copy()
      return a[()] if a.ndim == 0 else a
    return {k: _decode_value(x) for k, x in v.items()}
  if isinstance(v, list):
    return [_decode_value(x) for x in v]
  return v


def _encode_image(img, encoding):
  img = np.asarray(img)
  if img.ndim != 3 or img.shape[-1] not in (1, 3):
    raise ValueError(f"expected an image (H, W, 1|3), got shape {img.shape}")
  if encoding == "png" and img.dtype == np.uint8:
    return {"format": "png", "data": encode_png(img[..., 0] if img.shape[-1] == 1 else img),
            "channels": img.shape[-1]}
  return {"format": "raw", **_encode_value(img)}


def _decode_image(enc, name):
  if enc.get("format") == "png":
    img = decode_image(enc["data"], name)
    return img[..., :1] if enc.get("channels") == 1 else img
  return _decode_value({k: v for k, v in enc.items() if k != "format"})


def pack(clean, degraded=None, *, encoding="png", **meta) -> bytes:
  """One pair (arrays (H, W, 3)) and its metadata -> record bytes."""
  rec = {"v": VERSION, "clean": _encode_image(clean, encoding), "meta": _encode_value(meta)}
  if degraded is not None:
    rec["degraded"] = _encode_image(degraded, encoding)
  return msgpack.packb(rec, use_bin_type=True)


def unpack(data, name="<record>") -> dict:
  """Record bytes -> {'clean', 'degraded'?, 'type', 'meta'} with decoded arrays."""
  try:
    rec = msgpack.unpackb(data, raw=False)
    if not isinstance(rec, dict) or "clean" not in rec:
      raise ValueError("no 'clean' image")
  except (ValueError, msgpack.UnpackException) as e:
    raise BadRecord(name, "bad_record", e) from None
  if rec.get("v", 0) > VERSION:
    raise BadRecord(name, "bad_record", f"format version {rec['v']} is newer than this jaxdeg ({VERSION})")
  meta = _decode_value(rec.get("meta", {}))
  out = {"clean": _decode_image(rec["clean"], name), "type": str(meta.get("type", "")), "meta": meta}
  if "degraded" in rec:
    out["degraded"] = _decode_image(rec["degraded"], name)
  return out


def has_degraded(data) -> bool:
  """Whether a record holds a degraded image (without decoding anything)."""
  try:
    return "degraded" in msgpack.unpackb(data, raw=False)
  except (ValueError, msgpack.UnpackException):
    return False


def process_share(total, process_index=None, process_count=None) -> range:
  """The indices of `total` items that this process writes (disjoint, together all of them)."""
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  return range(pi, total, pc)


class RecordWriter:
  """Appends pairs to this process's ArrayRecord chunks; resumable (see the module docstring)."""

  def __init__(self, directory, *, prefix="pairs", records_per_chunk=1024, encoding="png",
               process_index=None, process_count=None):
    from array_record.python import array_record_module
    self._module = array_record_module
    self.directory = os.path.abspath(directory)
    self.prefix, self.records_per_chunk, self.encoding = prefix, int(records_per_chunk), encoding
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    os.makedirs(self.directory, exist_ok=True)
    mine = re.compile(rf"{re.escape(prefix)}-p{self.process_index:05d}-(\d{{5}})\.array_record(\.partial)?$")
    chunks = []
    for f in sorted(os.listdir(self.directory)):
      m = mine.match(f)
      if m and m.group(2):
        os.remove(os.path.join(self.directory, f))  # an interrupted chunk: its records are redone
      elif m:
        chunks.append(int(m.group(1)))
    self.chunk = max(chunks) + 1 if chunks else 0
    self.written = sum(self._count(self._path(c)) for c in chunks)
    self._writer, self._in_chunk = None, 0

  def _path(self, chunk, partial=False):
    name = f"{self.prefix}-p{self.process_index:05d}-{chunk:05d}.array_record"
    return os.path.join(self.directory, name + (".partial" if partial else ""))

  def _count(self, path):
    reader = self._module.ArrayRecordReader(path)
    try:
      return reader.num_records()
    finally:
      reader.close()

  def last_record(self):
    """The last record of this process's complete chunks (unpacked), or None."""
    for chunk in range(self.chunk - 1, -1, -1):
      path = self._path(chunk)
      if not os.path.exists(path):
        continue
      reader = self._module.ArrayRecordReader(path)
      try:
        n = reader.num_records()
        if n:
          return unpack(reader.read([n - 1])[0], f"{path}#{n - 1}")
      finally:
        reader.close()
    return None

  def pending(self, total) -> range:
    """Indices (of `total`) this process still has to write, in order."""
    return process_share(total, self.process_index, self.process_count)[self.written:]

  def write(self, clean, degraded=None, **meta):
    if self._writer is None:
      self._writer = self._module.ArrayRecordWriter(self._path(self.chunk, partial=True), "group_size:1")
    self._writer.write(pack(clean, degraded, encoding=self.encoding, **meta))
    self._in_chunk += 1
    if self._in_chunk >= self.records_per_chunk:
      self.flush()

  def flush(self):
    """Completes the current chunk (its records now count as written)."""
    if self._writer is None:
      return
    self._writer.close()
    os.replace(self._path(self.chunk, partial=True), self._path(self.chunk))
    self.written += self._in_chunk
    self.chunk += 1
    self._writer, self._in_chunk = None, 0

  close = flush

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
