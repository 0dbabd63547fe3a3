"""Image files <-> arrays, and image grids. Decoding with Pillow.

`decode_image` is what the pipelines use: bytes or a path -> (H, W, 3) uint8, or uint16 for
16-bit grey files, EXIF orientation applied, failures raised as `BadRecord` with a reason.
`read_image` is the float convenience for tools (and every CLI). Pillow reads 16-bit RGB PNGs as
8-bit RGB.

Hostile files are refused before their pixels are decoded: the size comes from the header
(`Image.open` is lazy), and more than `max_pixels` pixels (default `default_max_pixels()`, Pillow's
own decompression-bomb limit, or $JAXDEG_MAX_PIXELS) is the skip reason `too_large`. Float images
(32-bit TIFF) must hold finite values in [0, 1]: NaN/inf is `non_finite`, anything else outside
[0, 1] is `out_of_range` (no guessing whether 0..255 or 0..65535 was meant).
"""
import contextlib
import io
import os
import threading

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxdeg.data.skips import BadRecord
from jaxdeg.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")
_ORIENTATION = 0x0112
# Decodes above this many pixels run one at a time per process: each briefly holds the decoder's
# buffer and the array (2 x 3 bytes a pixel), and grain's reader threads would otherwise each hold one.
_LARGE_PIXELS = 1 << 24
_LARGE_DECODE = threading.Lock()
_NO_LOCK = contextlib.nullcontext()


def default_max_pixels() -> int:
  """The pixel cap when none is given: $JAXDEG_MAX_PIXELS, else Pillow's bomb limit (~179 M)."""
  env = os.environ.get("JAXDEG_MAX_PIXELS")
  if env:
    try:
      return int(env)
    except ValueError:
      raise DataError(f"JAXDEG_MAX_PIXELS={env!r}: must be an integer number of pixels") from None
  return 2 * Image.MAX_IMAGE_PIXELS


def _allow(max_pixels):
  """Our cap replaces Pillow's (which raises inside Image.open): lift Pillow's to at least ours."""
  cap = default_max_pixels() if max_pixels is None else int(max_pixels)
  if Image.MAX_IMAGE_PIXELS is not None and cap > 2 * Image.MAX_IMAGE_PIXELS:
    Image.MAX_IMAGE_PIXELS = cap // 2 + 1
  return cap


def read_image(path, max_pixels=None) -> np.ndarray:
  """Any Pillow-readable file -> float32 (H, W, 3) in [0, 1]; EXIF orientation honoured."""
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file")
  if os.path.isdir(path):
    raise DataError(f"{path}: a folder, not an image file")
  return to_float(decode_image(path, max_pixels=max_pixels))


def _ends(data, n=16):
  """(first n bytes, last n bytes, size) of a path or bytes."""
  if isinstance(data, (bytes, bytearray, memoryview)):
    data = bytes(data)
    return data[:n], data[-n:], len(data)
  with open(data, "rb") as f:
    head = f.read(n)
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - n))
    return head, f.read(n), size


def _cut_short(data) -> bool:
  """Starts like a PNG / WebP / JPEG / GIF but lacks that format's end: a partial copy or download.
  Only asked about files Pillow failed on, to name the reason `truncated` rather than a guess."""
  try:
    head, tail, size = _ends(data)
  except OSError:
    return False
  if head.startswith(b"\x89PNG\r\n\x1a\n"):
    return not tail.endswith(b"IEND\xaeB`\x82")
  if head[:4] == b"RIFF" and head[8:12] == b"WEBP":  # RIFF's header holds the file size
    return size < 8 + int.from_bytes(head[4:8], "little")
  if head.startswith(b"\xff\xd8\xff"):
    return not tail.rstrip(b"\0").endswith(b"\xff\xd9")
  if head[:6] in (b"GIF87a", b"GIF89a"):
    return not tail.endswith(b";")
  return False


def _open(data, name, max_pixels=None):
  """Opens a path or bytes with Pillow (the header only) and checks its size against the pixel cap;
  raises BadRecord(empty_file | unreadable | not_an_image | truncated | too_large)."""
  cap = _allow(max_pixels)
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
    im = Image.open(fp)
  except Image.DecompressionBombError as e:
    raise BadRecord(name, "too_large", e) from None
  except (UnidentifiedImageError, OSError) as e:
    if _cut_short(data):
      raise BadRecord(name, "truncated", "the file ends before its format's end marker") from None
    if isinstance(e, UnidentifiedImageError):
      raise BadRecord(name, "not_an_image") from None
    raise BadRecord(name, "unreadable", e) from None
  width, height = im.size
  if width * height > cap:
    im.close()
    raise BadRecord(name, "too_large", f"{width}x{height} = {width * height:,} pixels > the cap of {cap:,} "
                    "(config.data.max_pixels or $JAXDEG_MAX_PIXELS)")
  return im


def _reason(err, data):
  if isinstance(err, Image.DecompressionBombError):
    return "too_large"
  return "truncated" if "truncated" in str(err).lower() or _cut_short(data) else "corrupt"


def _oriented(im):
  """EXIF orientation applied; the image itself when there is none (exif_transpose would copy it)."""
  try:
    orientation = im.getexif().get(_ORIENTATION, 1)
  except Exception:  # a broken EXIF block does not make the pixels unusable
    return im
  return im if orientation == 1 else ImageOps.exif_transpose(im)


def decode_image(data, name=None, max_pixels=None) -> np.ndarray:
  """bytes or path -> (H, W, 3) uint8 (uint16 for 16-bit grey, float32 in [0, 1] for float files)."""
  name = name if name is not None else (data if isinstance(data, (str, os.PathLike)) else "<bytes>")
  im = _open(data, name, max_pixels)
  large = im.size[0] * im.size[1] > _LARGE_PIXELS
  try:
    with im, (_LARGE_DECODE if large else _NO_LOCK):
      im.load()
      return _checked(_to_rgb_array(_oriented(im)), name)
  except BadRecord:
    raise
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    raise BadRecord(name, _reason(e, data), e) from None


def _checked(arr, name):
  """Float pixels must be finite and in [0, 1]; integer ones always are."""
  if arr.dtype.kind == "f":
    if not np.isfinite(arr).all():
      raise BadRecord(name, "non_finite", f"{int((~np.isfinite(arr[..., 0])).sum())} NaN/inf pixels")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
      raise BadRecord(name, "out_of_range", f"float values in [{lo:g}, {hi:g}], not [0, 1]")
  return arr


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


def probe_image(data, name=None, verify=True, max_pixels=None) -> tuple[int, int]:
  """Cheap check without decoding the pixels: (height, width) after EXIF orientation.

  `verify` runs Pillow's structural check (chunk CRCs for PNG); truncated JPEG data still passes
  and is caught when decoded.
  """
  name = name if name is not None else data
  try:
    with _open(data, name, max_pixels) as im:
      width, height = im.size
      try:
        orientation = im.getexif().get(_ORIENTATION, 1)
      except Exception:  # a broken EXIF block does not make the pixels unusable
        orientation = 1
    if verify:
      with _open(data, name, max_pixels) as im:  # verify() must come straight after open()
        im.verify()
  except BadRecord:
    raise
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    raise BadRecord(name, _reason(e, data), e) from None
  return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def to_float(arr) -> np.ndarray:
  """uint8 / uint16 / float image -> float32 in [0, 1] (floats are passed through)."""
  arr = np.asarray(arr)
  # One pass that casts as it divides: the float32 quotients of astype() then "/", without the
  # intermediate array.
  if arr.dtype == np.uint8:
    return np.divide(arr, np.float32(255), dtype=np.float32)
  if arr.dtype == np.uint16:
    return np.divide(arr, np.float32(65535), dtype=np.float32)
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
