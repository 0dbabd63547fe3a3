"""Image files <-> float arrays in [0, 1], and image grids. Decoding with Pillow."""
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxdeg.errors import DataError


def read_image(path) -> np.ndarray:
  """Any Pillow-readable file -> float32 (H, W, 3) in [0, 1]; EXIF orientation honoured."""
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file")
  try:
    with Image.open(path) as im:
      im = ImageOps.exif_transpose(im)
      im.load()
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise DataError(f"{path}: not a readable image ({e})") from None
  return to_float_rgb(im)


def to_float_rgb(im: Image.Image) -> np.ndarray:
  if im.mode in ("I;16", "I;16B", "I;16L", "I"):
    arr = np.asarray(im, np.float32) / 65535.0
    return np.repeat(arr[..., None], 3, axis=-1).clip(0, 1)
  if im.mode != "RGB":
    im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "LA", "PA") else im.convert("RGB")
  return np.asarray(im, np.float32) / 255.0


def write_image(path, image) -> None:
  """float (H, W, 3|1) in [0, 1] (or uint8) -> PNG/JPEG by extension."""
  arr = np.asarray(image)
  if arr.dtype != np.uint8:
    arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(arr).save(path)


def make_grid(rows, pad=2, value=1.0) -> np.ndarray:
  """rows: list of lists of (H, W, 3) images (same size) -> one (H', W', 3) image."""
  rows = [[np.asarray(im, np.float32) for im in row] for row in rows]
  h, w = rows[0][0].shape[:2]
  ncol = max(len(r) for r in rows)
  out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), value, np.float32)
  for i, row in enumerate(rows):
    for j, im in enumerate(row):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      out[y:y + h, x:x + w] = im[..., :3] if im.ndim == 3 else im[..., None]
  return out
