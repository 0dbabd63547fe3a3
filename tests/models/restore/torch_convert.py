"""Torch state dict -> jaxdeg parameter tree, for parity tests against PyTorch references."""
import re

import numpy as np


def _leaf(name, a):
  """Torch tensor name and value -> (flax leaf name, value in flax layout)."""
  kind = name.rsplit(".", 1)[-1]
  if kind == "weight" and a.ndim == 4:  # conv OIHW -> HWIO
    return "kernel", a.transpose(2, 3, 1, 0)
  if kind == "weight" and a.ndim == 2:  # linear (out, in) -> (in, out)
    return "kernel", a.T
  if kind == "weight":  # norm
    return "scale", a
  if kind in ("beta", "gamma"):
    return kind, a.reshape(-1)
  return kind, a


def nafnet_params(state_dict):
  """Official-layout NAFNet state dict -> `{'params': ...}` for `jaxdeg.models.restore.NAFNet`."""
  rules = [(r"^encoders\.(\d+)\.(\d+)\.", r"enc\1_\2."), (r"^decoders\.(\d+)\.(\d+)\.", r"dec\1_\2."),
           (r"^middle_blks\.(\d+)\.", r"middle_\1."), (r"^downs\.(\d+)\.", r"down\1."),
           (r"^ups\.(\d+)\.0\.", r"up\1."), (r"\.sca\.1\.", ".sca.")]
  params = {}
  for name, t in state_dict.items():
    a = t.detach().cpu().numpy().astype(np.float32)
    for pat, rep in rules:
      name = re.sub(pat, rep, name)
    *path, kind = name.split(".")
    leaf, a = _leaf(name, a)
    node = params
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = a
  return {"params": params}
