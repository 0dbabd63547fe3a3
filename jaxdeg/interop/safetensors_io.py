"""A minimal reader for the .safetensors format (8-byte header length, JSON header, raw
little-endian tensors) that returns float32 numpy arrays, bfloat16 included (numpy has no
bfloat16, so the `safetensors` package cannot read those files without torch)."""
import json
import struct

import numpy as np

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def load(path):
  """{name: float32/int ndarray} from a .safetensors file."""
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) != 8:
      raise ValueError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", head)
    try:
      header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{path}: not a safetensors file (bad header: {e})") from None
    data = f.read()
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    start, end = info["data_offsets"]
    raw, shape, dtype = data[start:end], tuple(info["shape"]), info["dtype"]
    if dtype == "BF16":
      bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
      a = bits.view(np.float32)
    elif dtype in _DTYPES:
      a = np.frombuffer(raw, np.dtype(_DTYPES[dtype]).newbyteorder("<"))
    else:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
    a = a.reshape(shape)
    out[name] = a.astype(np.float32) if a.dtype.kind == "f" else a.copy()
  return out
