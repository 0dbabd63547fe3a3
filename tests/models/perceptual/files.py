"""Random perceptual-metric weights written to a folder in the official file layouts."""
import os

import torch

from benchmarks.peers import torch_perceptual
from jaxdeg.models.perceptual import weights

NAMES = {"vgg16": "vgg16.pth", "lpips": "vgg.pth", "dists": "weights.pt"}


def random_states(seed=0):
  return {"vgg16": torch_perceptual.random_vgg16_state(seed),
          "lpips": torch_perceptual.random_lpips_lins(seed + 1),
          "dists": torch_perceptual.random_dists_alpha_beta(seed + 2)}


def write_random_weights(folder, seed=0, npz=False):
  """({'vgg16', 'lpips', 'dists'}: path, the torch state dicts), `.pth/.pt` or `.npz` copies."""
  states = random_states(seed)
  paths = {}
  for key, state in states.items():
    path = os.path.join(folder, NAMES[key])
    torch.save(state, path)
    if npz:
      npz_path = os.path.splitext(path)[0] + ".npz"
      weights.to_npz(path, npz_path)
      path = npz_path
    paths[key] = path
  return paths, states
