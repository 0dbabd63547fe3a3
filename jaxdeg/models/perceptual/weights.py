"""Reading the official perceptual-metric weight files into Flax params.

Layouts (the key names are the official ones; `.npz` files with the same keys work without torch):
  torchvision vgg16 state dict   features.{0,2,5,...,28}.weight (O, I, 3, 3), .bias (O,)
                                 (classifier.* keys, if present, are ignored)
  lpips weights/v0.1/vgg.pth     lin{0..4}.model.1.weight (1, C, 1, 1), C = 64, 128, 256, 512, 512
  DISTS_pytorch weights.pt       alpha, beta (1, 1475, 1, 1)
Convert once where torch is installed: `python -m jaxdeg.models.perceptual.weights FILE.pth FILE.npz`.
"""
import os
import sys

import numpy as np

from jaxdeg.errors import UserError

# (torchvision features index, in channels, out channels) of VGG16's 13 convolutions
VGG16_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
               (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
               (26, 512, 512), (28, 512, 512))
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)


class PerceptualWeightsError(UserError):
  """A perceptual-metric weight file is missing, unreadable or has the wrong keys or shapes."""


def read_state_dict(path):
  """{key: float32 numpy array} from a torch `.pth/.pt` state dict or an `.npz`."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise PerceptualWeightsError(f"{path}: no such weight file")
  if path.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as npz:
        return {k: np.asarray(npz[k], np.float32) for k in npz.files}
    except Exception as e:  # numpy raises several types for broken archives
      raise PerceptualWeightsError(f"{path}: cannot read as .npz: {e}") from None
  try:
    import torch
  except ImportError:
    raise PerceptualWeightsError(
        f"{path}: reading a torch weight file needs torch installed; or convert it once to .npz where "
        "torch is installed: python -m jaxdeg.models.perceptual.weights FILE.pth FILE.npz") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for unreadable files
    raise PerceptualWeightsError(f"{path}: cannot read as a torch state dict: {e}") from None
  if not isinstance(state, dict):
    raise PerceptualWeightsError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
  return {k: v.detach().float().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _take(state, path, key, shape):
  if key not in state:
    some = ", ".join(sorted(state)[:6]) or "none"
    raise PerceptualWeightsError(f"{path}: key {key!r} missing (expected shape {shape}); keys there: {some}...")
  value = state[key]
  if tuple(value.shape) != tuple(shape):
    raise PerceptualWeightsError(f"{path}: key {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
  return value


def vgg16_params(path):
  """Flax params of `vgg.VGG16Features` from a torchvision vgg16 state dict (OIHW → HWIO)."""
  state = read_state_dict(path)
  params = {}
  for index, cin, cout in VGG16_CONVS:
    kernel = _take(state, path, f"features.{index}.weight", (cout, cin, 3, 3))
    bias = _take(state, path, f"features.{index}.bias", (cout,))
    params[f"features_{index}"] = {"kernel": np.transpose(kernel, (2, 3, 1, 0)), "bias": bias}
  return params


def lpips_linear_weights(path):
  """The five non-negative channel weights of LPIPS's 1×1 linear heads, each (C,)."""
  state = read_state_dict(path)
  heads = []
  for k, c in enumerate(LPIPS_CHANNELS):
    key = f"lin{k}.model.1.weight"
    w = _take(state, path, key, (1, c, 1, 1)).reshape(c)
    if np.any(w < 0):  # official training clamps them at 0, which keeps LPIPS ≥ 0
      raise PerceptualWeightsError(f"{path}: key {key!r} has negative weights; LPIPS heads are non-negative")
    heads.append(w)
  return heads


def dists_alpha_beta(path):
  """(alpha, beta), each (1475,): DISTS's per-channel weights of the structure and texture terms."""
  state = read_state_dict(path)
  n = sum(DISTS_CHANNELS)
  return tuple(_take(state, path, key, (1, n, 1, 1)).reshape(n) for key in ("alpha", "beta"))


def to_npz(src, dst):
  """Writes a torch weight file's tensors to `.npz` under the same keys."""
  np.savez(dst, **read_state_dict(src))


if __name__ == "__main__":
  if len(sys.argv) != 3 or not sys.argv[2].endswith(".npz"):
    sys.exit("usage: python -m jaxdeg.models.perceptual.weights FILE.pth FILE.npz")
  to_npz(sys.argv[1], sys.argv[2])
