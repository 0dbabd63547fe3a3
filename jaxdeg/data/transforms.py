"""grain transforms from undecoded records (sources.py) to fixed-shape examples.

Decode -> PairCrop (train) or CenterCrop (eval) -> Degrade (on-the-fly degradations, CPU) -> Finalize.
Every transform is picklable so `mp_prefetch` workers run the same code. A record that cannot be
used becomes None (grain drops it when iterating) after being counted in skips.py.

Training crops keep the file's dtype (uint8 / uint16) until `images_to_float` runs on the batch
after it leaves the worker processes: an 8-bit crop is a quarter of the float32 bytes through shared
memory, whose fresh pages cost more than the conversion. Eval crops are float32 at once.
"""
import dataclasses
import threading
import zlib

import grain
import jax
import numpy as np

from jaxdeg.data import records, skips
from jaxdeg.data.images import decode_image, to_float
from jaxdeg.data.skips import BadRecord

FLIPS = ("", "h", "hv", False, True, None)  # True means "h"
FULL_MIN = 7  # smallest side evaluated at full resolution: SSIM's Gaussian window is 7x7
_COMPILE_LOCK = threading.Lock()


def _as_image(value, name, max_pixels=None):
  if isinstance(value, np.ndarray):
    if value.ndim == 2:
      value = value[..., None]
    if value.ndim != 3 or value.shape[-1] not in (1, 3, 4):
      raise BadRecord(name, "bad_record", f"image array of shape {value.shape}")
    return np.repeat(value, 3, -1) if value.shape[-1] == 1 else value[..., :3]
  return decode_image(value, name, max_pixels)


def _synthetic_noise(clean, sigma, name):
  """BSD68 convention: clean + N(0, (sigma/255)²), unclipped, fixed per image (seeded by file name)."""
  rng = np.random.default_rng(zlib.crc32(str(name).rsplit("/", 1)[-1].encode()))
  x = to_float(clean)
  return x + rng.normal(0.0, sigma / 255.0, x.shape).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Decode(grain.transforms.Map):
  """Undecoded record -> {'clean', 'degraded'?, 'name', 'type', 'meta'} with (H, W, 3) arrays."""
  on_error: str
  skip_dir: str
  max_pixels: int | None = None  # None: images.default_max_pixels()
  source_index: int = 0  # which input: with the name, the record's identity in skip counts

  def map(self, raw):
    name = str(raw.get("name", "<record>"))
    record = f"{self.source_index}:{name}"
    try:
      rec = records.unpack(raw["packed"], name) if "packed" in raw else raw
      clean = rec["clean"] if "clean" in rec else rec["image"]
      out = {"clean": _as_image(clean, clean if isinstance(clean, str) else name, self.max_pixels)}
      degraded = rec.get("degraded")
      if degraded is not None:
        out["degraded"] = _as_image(degraded, degraded if isinstance(degraded, str) else name, self.max_pixels)
        if out["degraded"].shape[:2] != out["clean"].shape[:2]:
          d, c = out["degraded"].shape, out["clean"].shape
          raise BadRecord(name, "size_mismatch", f"{d[0]}x{d[1]} vs clean {c[0]}x{c[1]}")
      elif rec.get("noise_sigma") is not None:
        out["degraded"] = _synthetic_noise(out["clean"], float(rec["noise_sigma"]), name)
    except BadRecord as e:
      skips.record_decode(e, self.on_error, self.skip_dir, record)
      return None
    out.update(name=name, type=str(rec.get("type", "")), meta=dict(rec.get("meta", {})), record=record)
    return out


def _flip(images, rng, mode):
  if mode in (True, "h", "hv") and rng.random() < 0.5:
    images = [im[:, ::-1] for im in images]
  if mode == "hv" and rng.random() < 0.5:
    images = [im[::-1] for im in images]
  return images


def _too_small(rec, size, on_error, skip_dir, why=""):
  h, w = rec["clean"].shape[:2]
  if h >= size and w >= size:
    return False
  skips.record_decode(BadRecord(rec["name"], "too_small", f"{h}x{w} < {size}{why}"), on_error, skip_dir,
                      rec.get("record"))
  return True


@dataclasses.dataclass(frozen=True)
class PairCrop(grain.transforms.RandomMap):
  """Aligned random `crop`² of clean and degraded, optional flips, in the decoded dtype.

  `key_crop` adds a second, independently placed crop of the degraded image ('degraded_key', the
  universal model's contrastive positive), or of the clean image ('clean_key') when the degraded
  one is made later by Degrade with the same degradation. 'seed' seeds that degradation.
  """
  crop: int
  flip: bool | str = False
  key_crop: bool = False
  on_error: str = "skip"
  skip_dir: str = ""

  def random_map(self, rec, rng: np.random.Generator):
    if _too_small(rec, self.crop, self.on_error, self.skip_dir):
      return None
    h, w = rec["clean"].shape[:2]
    c = self.crop
    y, x = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
    names = ["clean"] + (["degraded"] if "degraded" in rec else [])
    crops = _flip([rec[n][y:y + c, x:x + c] for n in names], rng, self.flip)
    out = {n: np.ascontiguousarray(im) for n, im in zip(names, crops)}
    if self.key_crop:
      src = "degraded" if "degraded" in rec else "clean"
      y2, x2 = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
      (key,) = _flip([rec[src][y2:y2 + c, x2:x2 + c]], rng, self.flip)
      out[f"{src}_key"] = np.ascontiguousarray(key)
    out["seed"] = np.uint32(rng.integers(0, 2**32, dtype=np.uint64))
    out.update(name=rec["name"], type=rec["type"], meta=rec["meta"])
    return out


@dataclasses.dataclass(frozen=True)
class CenterCrop(grain.transforms.Map):
  """Deterministic centre `crop`² of every image -> float32 (evaluation); smaller images skip.
  `crop=None` keeps the whole image (full-resolution evaluation); below FULL_MIN² it skips too."""
  crop: int | None
  on_error: str = "skip"
  skip_dir: str = ""

  def map(self, rec):
    if rec is None:
      return None
    size, why = (self.crop, "") if self.crop is not None else (FULL_MIN, " (SSIM's 7x7 window)")
    if _too_small(rec, size, self.on_error, self.skip_dir, why):
      return None
    h, w = rec["clean"].shape[:2]
    ch, cw = (h, w) if self.crop is None else (self.crop, self.crop)
    y, x = (h - ch) // 2, (w - cw) // 2
    out = {n: to_float(rec[n][y:y + ch, x:x + cw]) for n in ("clean", "degraded") if n in rec}
    out.update(name=rec["name"], type=rec["type"], meta=rec["meta"])
    return out


class Degrade(grain.transforms.Map):
  """Degraded image(s) from the clean crop(s) with jaxdeg.degrade specs, run by JAX on the CPU.

  The same key degrades 'clean' and 'clean_key', so both carry the same degradation (intensity,
  kernel, ...). One compiled function per process and crop size. Runs inside grain (and its
  worker processes), so the accelerator only sees finished pairs.
  """

  def __init__(self, spec):
    from jaxdeg.degrade import registry
    stages, _ = registry.parse_spec(spec)  # unknown names fail when the pipeline is built
    self.spec = spec.to_dict() if hasattr(spec, "to_dict") else spec
    self.type_name = "+".join(name for name, *_ in stages)
    self._compiled = {}

  def __getstate__(self):
    return {"spec": self.spec, "type_name": self.type_name, "_compiled": {}}

  def _function(self, shape):
    fn = self._compiled.get(shape)
    if fn is None:
      with _COMPILE_LOCK:  # grain's reader threads would otherwise each compile their own copy
        fn = self._compiled.get(shape)
        if fn is None:
          fn = self._compiled[shape] = self._compile(shape)
    return fn

  def _compile(self, shape):
    from jaxdeg.degrade import registry
    spec = self.spec

    def degrade(seed, images):
      key = jax.random.PRNGKey(seed)
      out, params = jax.vmap(lambda im: registry.apply_spec(key, im, spec))(images)
      stage = params if "intensity" in params else next(iter(params.values()))
      return out, stage["intensity"][0]

    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    compiled = jax.jit(degrade).lower(jax.ShapeDtypeStruct((), np.uint32, sharding=cpu),
                                      jax.ShapeDtypeStruct(shape, np.float32, sharding=cpu)).compile()
    return compiled  # takes numpy arguments: they go to the CPU device it was compiled for

  def map(self, rec):
    if rec is None:
      return None
    names = ["clean"] + (["clean_key"] if "clean_key" in rec else [])
    images = np.stack([to_float(rec[n]) for n in names])
    # one transfer for both outputs (a float() of the scalar would be a second one)
    out, intensity = jax.device_get(self._function(images.shape)(np.uint32(rec["seed"]), images))
    rec = dict(rec, degraded=out[0], type=rec["type"] or self.type_name,
               meta=dict(rec["meta"], intensity=float(intensity)))
    if "clean_key" in rec:
      rec["degraded_key"] = out[1]
      del rec["clean_key"]
    return rec


@dataclasses.dataclass(frozen=True)
class Finalize(grain.transforms.Map):
  """Drops strings and ragged metadata so examples batch: numeric fields only.

  Paired examples: clean, degraded, degraded_key?, type (id in `type_names`, -1 unknown),
  intensity (NaN unknown), source (index of the input), and `meta_fields` as float32.
  Clean-only examples: image, image_key?.
  """
  source_index: int
  type_names: tuple[str, ...] = ()
  meta_fields: tuple[str, ...] = ()

  def map(self, rec):
    if rec is None:
      return None
    if "degraded" not in rec:
      out = {"image": rec["clean"]}
      if "clean_key" in rec:
        out["image_key"] = rec["clean_key"]
      return out
    out = {k: rec[k] for k in ("clean", "degraded", "degraded_key") if k in rec}
    t = rec["type"]
    out["type"] = np.int32(self.type_names.index(t) if t in self.type_names else -1)
    out["intensity"] = np.float32(rec["meta"].get("intensity", np.nan))
    out["source"] = np.int32(self.source_index)
    for f in self.meta_fields:
      out[f] = np.asarray(rec["meta"].get(f, np.nan), np.float32)
    return out


IMAGE_FIELDS = ("clean", "degraded", "degraded_key", "image", "image_key")


def images_to_float(example):
  """An example's or a batch's 8- and 16-bit image fields -> float32 in [0, 1]; the rest as is."""
  return {k: to_float(v) if k in IMAGE_FIELDS and v.dtype != np.float32 else v for k, v in example.items()}


def stack_examples(examples):
  """grain batch_fn: each field stacked; an image field whose examples differ in dtype (8- and
  16-bit files, or a float one, in one batch) is stacked as float32 so no value loses its scale."""
  mixed = [k for k in IMAGE_FIELDS if k in examples[0] and len({x[k].dtype for x in examples}) > 1]
  if mixed:
    examples = [dict(x, **{k: to_float(x[k]) for k in mixed}) for x in examples]
  return jax.tree.map(lambda *leaves: np.stack(leaves), *examples)
