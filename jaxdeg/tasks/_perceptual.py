"""Perceptual distances (LPIPS, DISTS) for the tasks' losses and metrics, from weight files named in
a config section: `<kind>_weights` turns a distance on, `vgg16_weights` is the trunk they share.

The files are read once, when the task is built. The distances' weights are constants of the
jitted steps that use them, so checkpoints (and `init_from` between runs with and without a
perceptual term) do not depend on them.
"""
import os

from jaxdeg.errors import ConfigError
from jaxdeg.models import perceptual

LOADERS = {"lpips": perceptual.load_lpips, "dists": perceptual.load_dists}
DESCRIPTIONS = {"lpips": "LPIPS (the lpips package's weights/v0.1/vgg.pth)",
                "dists": "DISTS (DISTS_pytorch's weights.pt: alpha, beta)"}


def load(section, where, kinds):
  """{kind: PerceptualDistance} for each kind in `kinds` whose `section.<kind>_weights` is set."""
  wanted = {k: section.get(f"{k}_weights") for k in kinds if section.get(f"{k}_weights")}
  if not wanted:
    return {}
  vgg_path = section.get("vgg16_weights")
  if not vgg_path:
    fields = " and ".join(f"{where}.{k}_weights" for k in wanted)
    raise ConfigError(f"{fields} set but {where}.vgg16_weights is not: LPIPS and DISTS need torchvision's "
                      "ImageNet vgg16 weights (its .pth state dict, or an .npz copy)")
  try:
    vgg = perceptual.weights.vgg16_params(vgg_path)
  except perceptual.PerceptualWeightsError as e:
    raise ConfigError(f"{where}.vgg16_weights: {e}") from None
  distances = {}
  for kind, path in wanted.items():
    try:
      distances[kind] = LOADERS[kind](vgg, path)
    except perceptual.PerceptualWeightsError as e:
      raise ConfigError(f"{where}.{kind}_weights: {e} (expected {DESCRIPTIONS[kind]})") from None
  return distances


def describe(distances, section):
  """'10·DISTS (weights.pt) + 1·LPIPS (vgg.pth)' for the log."""
  return " + ".join(f"{section.get(f'{k}_weight')}·{k.upper()} ({os.path.basename(section.get(f'{k}_weights'))})"
                    for k in distances)



def load_inception(section, where):
  """FID's Inception feature network from `section.inception_weights`, or None when unset."""
  path = section.get("inception_weights")
  if not path:
    return None
  try:
    return perceptual.load_inception(path)
  except perceptual.PerceptualWeightsError as e:
    raise ConfigError(f"{where}.inception_weights: {e} (expected pytorch-fid's "
                      "pt_inception-2015-12-05-6726825d.pth or an .npz copy)") from None
