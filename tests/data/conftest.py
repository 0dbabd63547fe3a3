"""Fixtures for the data tests: tiny image files written into temp folders, fresh skip counts."""
import os

import numpy as np
import pytest
from PIL import Image

from jaxdeg.data import skips


@pytest.fixture(autouse=True)
def fresh_skips():
  skips.reset()
  yield
  skips.reset()


def write(path, arr, **save_kwargs):
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  img = arr if isinstance(arr, Image.Image) else Image.fromarray(np.asarray(arr))
  img.save(str(path), **save_kwargs)
  return str(path)


def flat(ident, h=16, w=16):
  """An image whose red channel names it: every pixel (10 * ident, 0, 255 - 10 * ident)."""
  img = np.zeros((h, w, 3), np.uint8)
  img[..., 0], img[..., 2] = 10 * ident, 255 - 10 * ident
  return img


def ident(image) -> int:
  """The `ident` of a (crop of a) flat image, float in [0, 1] or uint8."""
  red = float(np.asarray(image)[..., 0].mean())
  red = red * 255.0 if np.asarray(image).dtype != np.uint8 else red
  return int(round(red / 10.0))


def gradient(h, w, seed=0):
  """A random smooth-ish uint8 image: crops of it are distinguishable by position."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
