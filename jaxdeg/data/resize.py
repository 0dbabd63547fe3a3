"""Whole images resized to a square with Pillow's Lanczos, and GenDeg's intensity statistics of a
pair measured on them, as GenDeg's EditDataset does (resize both images whole to 256² with
`Image.resize(..., LANCZOS)`, then μ/σ of |clean − degraded| in [0, 1]) before its crop and flip.
"""
import dataclasses

import grain
import numpy as np
from PIL import Image


def lanczos_square(image, size):
  """(H, W, 3) image -> (size, size, 3) with Pillow's Lanczos. uint8 stays uint8 (resized as an RGB
  image, as GenDeg's PIL pipeline); other dtypes are resized per channel as float32 in [0, 1] scale."""
  image = np.asarray(image)
  if image.shape[:2] == (size, size):
    return image
  if image.dtype == np.uint8:
    return np.asarray(Image.fromarray(image, "RGB").resize((size, size), Image.Resampling.LANCZOS))
  scale = 65535.0 if image.dtype == np.uint16 else 1.0
  channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32) / scale, "F")
                         .resize((size, size), Image.Resampling.LANCZOS)) for c in range(image.shape[-1])]
  return np.stack(channels, axis=-1).astype(np.float32)


def _unit(image):
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image / 255.0  # float64, as GenDeg's `np.array(image) / 255`
  return image.astype(np.float64) / (65535.0 if image.dtype == np.uint16 else 1.0)


def pair_stats(clean, degraded):
  """GenDeg's (μ, σ): mean and (population) standard deviation of |clean − degraded| over all pixels
  and channels, images in [0, 1] (uint8 divided by 255)."""
  diff = np.abs(_unit(clean) - _unit(degraded))
  return float(diff.mean()), float(diff.std())


@dataclasses.dataclass(frozen=True)
class PairResize(grain.transforms.Map):
  """Decoded record -> clean (and degraded) resized whole to `size`² (Lanczos); a pair gets its
  GenDeg (μ, σ) on the resized images in meta['mu'], meta['sigma']. No image is too small."""
  size: int

  def map(self, rec):
    if rec is None:
      return None
    out = dict(rec, clean=lanczos_square(rec["clean"], self.size))
    if "degraded" in rec:
      out["degraded"] = lanczos_square(rec["degraded"], self.size)
      mu, sigma = pair_stats(out["clean"], out["degraded"])
      out["meta"] = dict(rec["meta"], mu=mu, sigma=sigma)
    return out
