"""Clean photos that ship inside installed packages: usable with no network.

scikit-image (`skimage.data`), scikit-learn (`load_sample_images`) and matplotlib
(`grace_hopper.jpg`). Each loader returns uint8 (H, W, 3).
"""
import functools

import numpy as np

from jaxdeg.errors import DataError

_SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
            "retina", "colorwheel")


def _skimage(name):
  import warnings

  import skimage.data
  with warnings.catch_warnings():  # skimage's own loaders call its deprecated plugin machinery
    warnings.simplefilter("ignore", FutureWarning)
    return np.asarray(getattr(skimage.data, name)())[..., :3]


def _sklearn(index):
  from sklearn.datasets import load_sample_images
  return np.asarray(load_sample_images().images[index])


def _grace_hopper():
  import matplotlib.cbook
  from PIL import Image
  with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
    return np.asarray(Image.open(f).convert("RGB"))


_LOADERS = {name: functools.partial(_skimage, name) for name in _SKIMAGE}
_LOADERS.update(china=functools.partial(_sklearn, 0), flower=functools.partial(_sklearn, 1),
                grace_hopper=_grace_hopper)


def names() -> list[str]:
  return list(_LOADERS)


# The photos experiments train and evaluate on, in the order their sources list them (the order
# fixes which photo each shuffled index is), and the three usually held out for evaluation.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "china", "flower",
          "colorwheel", "grace_hopper", "retina")
HELD_OUT = ("grace_hopper", "retina", "flower")


def split(held_out=HELD_OUT) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(photos to train on: PHOTOS less `held_out`, in PHOTOS' order; the held-out photos)."""
  unknown = [n for n in held_out if n not in PHOTOS]
  if unknown:
    raise DataError(f"held-out photo(s) {unknown} are not among {', '.join(PHOTOS)}")
  return tuple(n for n in PHOTOS if n not in held_out), tuple(held_out)


@functools.lru_cache(maxsize=None)
def load(name: str) -> np.ndarray:
  if name not in _LOADERS:
    raise DataError(f"unknown sample photo {name!r}; available: {', '.join(_LOADERS)}")
  img = _LOADERS[name]()
  img.setflags(write=False)
  return img


class SamplePhotos:
  """Random-access source (grain protocol: __len__, __getitem__) of named sample photos."""

  def __init__(self, photo_names):
    unknown = [n for n in photo_names if n not in _LOADERS]
    if unknown:
      raise DataError(f"unknown sample photo(s) {unknown}; available: {', '.join(_LOADERS)}")
    self.names = list(photo_names)

  def __len__(self):
    return len(self.names)

  def __getitem__(self, index):
    name = self.names[index]
    return {"image": load(name), "name": name}

  def __repr__(self):
    return f"SamplePhotos({self.names})"
