"""Shared test helpers."""
import importlib.util
import os
import re

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def xla_flags(devices):
  """The test session's XLA_FLAGS (conftest.py) with `devices` fake CPU devices, for subprocesses."""
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
  return f"--xla_force_host_platform_device_count={devices} {flags.strip()}"


def load_config(spec, steps=None, overrides=(), **fields):
  """'configs/x.py:variant' -> ConfigDict, with 'a.b=value' overrides (values parsed as Python)."""
  import ast
  path, _, variant = spec.partition(":")
  mod_spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, path))
  mod = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(mod)
  config = mod.get_config(variant or None)
  if steps is not None:
    config.train.steps = steps
  items = [o.split("=", 1) for o in overrides] + [(k.replace("__", "."), v) for k, v in fields.items()]
  for key, value in items:
    if isinstance(value, str):
      try:
        value = ast.literal_eval(value)
      except (ValueError, SyntaxError):
        pass
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def max_abs_diff(a, b):
  diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))), a, b)
  return max(jax.tree.leaves(diffs))


def bomb_png(path, side=100_000):
  """A valid-looking PNG whose header claims side² pixels (a decompression bomb): 100 bytes on disk."""
  import struct
  import zlib

  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
  header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))
  return str(path)
