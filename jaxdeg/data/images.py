"""Image files <-> arrays, and image grids. Decoding with Pillow.

`decode_image` is what the pipelines use: bytes or a path -> (H, W, 3) uint8, or uint16 for
16-bit grey files, EXIF orientation applied, failures raised as `BadRecord` with a reason.
`read_image` is the float convenience for tools. Pillow reads 16-bit RGB PNGs as 8-bit RGB.
"""
import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxdeg.data.skips import BadRecord
from jaxdeg.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")
_ORIENTATION = 0x0112


def read_image(path) -> np.ndarray:
  """Any Pillow-readable file -> float32 (H, W, 3) in [0, 1]; EXIF orientation honoured."""
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file")
  return to_float(decode_image(path))


def _open(data, name):
  """Opens a path or bytes with Pillow; raises BadRecord(empty_file | unreadable | not_an_image)."""
  if isinstance(data, (bytes, bytearray, memoryview)):
    if len(data) == 0:
      raise BadRecord(name, "empty_file")
    fp = io.BytesIO(data)
  else:
    try:
      if os.path.getsize(data) == 0:
        raise BadRecord(name, "empty_file")
    except OSError as e:
      raise BadRecord(name, "unreadable", e.strerror or e) from None
    fp = data
  try:
    return Image.open(fp)
  except UnidentifiedImageError:
    raise BadRecord(name, "not_an_image") from None
  except OSError as e:
    raise BadRecord(name, "unreadable", e) from None


def _reason(err):
  return "truncated" if "truncated" in str(err).lower() else "corrupt"


def decode_image(data, name=None) -> np.ndarray:
  """bytes or path -> (H, W, 3) uint8 (uint16 for 16-bit grey, float32 for float files)."""
  name = name if name is not None else (data if isinstance(data, (str, os.PathLike)) else "<bytes>")
  im = _open(data, name)
  try:
    with im:
      im = ImageOps.exif_transpose(im)
      im.load()
      return _to_rgb_array(im)
  except BadRecord:
    raise
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    raise BadRecord(name, _reason(e), e) from None


def _to_rgb_array(im):
  if im.mode in _SIXTEEN_BIT:
    arr = np.asarray(im)
    arr = np.clip(arr, 0, 65535).astype(np.uint16) if arr.dtype != np.uint16 else arr
    return np.repeat(arr[..., None], 3, axis=-1)
  if im.mode == "F":
    return np.repeat(np.asarray(im, np.float32)[..., None], 3, axis=-1)
  if im.mode != "RGB":
    # Palette and alpha images go through RGBA so transparency becomes its colour, not garbage.
    im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA", "LA") else im.convert("RGB")
  return np.asarray(im)


def probe_image(data, name=None, verify=True) -> tuple[int, int]:
  """Cheap check without decoding the pixels: (height, width) after EXIF orientation.

  `verify` runs Pillow's structural check (chunk CRCs for PNG); truncated JPEG data still passes
  and is caught when decoded.
  """
  name = name if name is not None else data
  try:
    with _open(data, name) as im:
      width, height = im.size
      try:
        orientation = im.getexif().get(_ORIENTATION, 1)
      except Exception:  # a broken EXIF block does not make the pixels unusable
        orientation = 1
    if verify:
      with _open(data, name) as im:  # verify() must come straight after open()
        im.verify()
  except BadRecord:
    raise
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    raise BadRecord(name, _reason(e), e) from None
  return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def to_float(arr) -> np.ndarray:
  """uint8 / uint16 / float image -> float32 in [0, 1] (floats are passed through)."""
  arr = np.asarray(arr)
  if arr.dtype == np.uint8:
    return arr.astype(np.float32) / 255.0
  if arr.dtype == np.uint16:
    return arr.astype(np.float32) / 65535.0
  return arr.astype(np.float32)


def write_image(path, image) -> None:
  """float (H, W, 3|1) in [0, 1] (or uint8) -> PNG/JPEG by extension."""
  arr = np.asarray(image)
  if arr.dtype != np.uint8:
    arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(arr).save(path)


def encode_png(arr) -> bytes:
  """uint8 or uint16 (H, W, 3|1) -> lossless PNG bytes (uint16 colour is kept as raw elsewhere)."""
  buf = io.BytesIO()
  Image.fromarray(np.asarray(arr)).save(buf, format="PNG", compress_level=1)
  return buf.getvalue()


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
