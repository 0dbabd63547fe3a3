"""Train and eval data from `config.data`, so tasks never build pipelines by hand.

    config.data.sources = (                       # training inputs, mixed by weight
        dict(kind="folder", path="/data/photos", weight=2.0,
             degradations=[dict(name="haze", intensity=(0.2, 1.0))]),
        dict(kind="paired", path="/data/SOTS/indoor", layout="sots"),
        dict(kind="tfds", name="rain100l", split="train", manual_dir="/data/Rain100L",
             data_dir="/data/tfds"),
        dict(kind="array_record", path="/data/synth"),
        dict(kind="samples", photos=("astronaut", "coffee"), degradations="gaussian_noise"),
    )
    config.data.eval_sources = (...)              # same kinds; concatenated in order
    config.data.crop, .eval_crop, .flip ('' none, 'h', 'hv'), .degraded_key, .on_error,
    .worker_count, .validate, .types, .meta_fields, .read_threads, .max_pixels
    config.data.resize            > 0: images resized whole to resize² (Lanczos) before the crop, no
                                  image too small, pairs carry GenDeg's 'mu'/'sigma' measured on them

Per kind, the keys a source dict may have (every kind also takes `label`, the source's name in
evaluation tables):
  folder        path, degradations (made in the pipeline), type, weight
  paired        path, layout (layouts.PRESETS), degraded_dirs, clean_dirs, pattern, template, type,
                sigma (bsd68), weight
  tfds          name (sots | rain100l | lol | gopro | bsd68), split, data_dir, manual_dir, sigma, weight
  array_record  path (folder or file list), types (labels its records use), weight
  samples       photos, degradations, weight
`types` (optional) fixes the label vocabulary that a batch's 'type' indexes; by default it is the
sorted set of labels the train and eval sources declare.
"""
import os

import ml_collections
from ml_collections import config_dict

from jaxdeg.data import pipeline, samples, sources, transforms
from jaxdeg.data.skips import check_on_error
from jaxdeg.errors import ConfigError

_KEYS = {
    "folder": {"path", "degradations", "type", "weight", "label"},
    "paired": {"path", "layout", "degraded_dirs", "clean_dirs", "pattern", "template", "type", "sigma", "weight",
               "label"},
    "tfds": {"name", "split", "data_dir", "manual_dir", "sigma", "weight", "label"},
    "array_record": {"path", "types", "weight", "label"},
    "samples": {"photos", "degradations", "weight", "label"},
}
_REQUIRED = {"folder": ("path",), "paired": ("path",), "tfds": ("name",), "array_record": ("path",),
             "samples": ("photos",)}


def defaults() -> ml_collections.ConfigDict:
  """The data fields with their defaults (merge into a config's `data`)."""
  d = ml_collections.ConfigDict(dict(
      sources=(), eval_sources=(), crop=256, eval_crop=256, flip="", degraded_key=False,
      on_error="skip", worker_count=0, validate=True, types=(), meta_fields=(), read_threads=4, resize=0))
  # images with more pixels are skipped as `too_large`, from their header (None: images.default_max_pixels())
  d.max_pixels = config_dict.placeholder(int)
  return d


def _plain(value):
  return value.to_dict() if hasattr(value, "to_dict") else value


def _get(data, name):
  base = defaults()
  return data.get(name, base[name]) if hasattr(data, "get") else getattr(data, name, base[name])


def _spec(raw, where):
  spec = dict(_plain(raw))
  kind = spec.pop("kind", None)
  if kind not in _KEYS:
    raise ConfigError(f"{where}.kind={kind!r}: must be one of {', '.join(_KEYS)}")
  unknown = set(spec) - _KEYS[kind]
  if unknown:
    raise ConfigError(f"{where} ({kind}): unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS[kind])}")
  missing = [k for k in _REQUIRED[kind] if not spec.get(k)]
  if missing:
    raise ConfigError(f"{where} ({kind}): missing {', '.join(missing)}")
  return kind, spec


def declared_types(raw) -> set:
  """Labels a source spec can produce, without opening it."""
  from jaxdeg.data import layouts
  kind, spec = _spec(raw, "source")
  if kind == "paired":
    return {spec.get("type") or layouts.rule_for(spec.get("layout", "relative")).type_name} - {""}
  if kind == "tfds":
    from jaxdeg.data.tfds import BUILDERS
    short = spec["name"] if spec["name"] in BUILDERS else spec["name"].replace("jaxdeg_", "").split("/")[0]
    return {layouts.PRESETS[short].type_name} if short in layouts.PRESETS else set()
  if kind == "array_record":
    return set(spec.get("types", ()))
  if spec.get("degradations"):
    return {transforms.Degrade(_plain(spec["degradations"])).type_name}
  return {spec["type"]} if spec.get("type") else set()


def type_names(data) -> tuple[str, ...]:
  fixed = tuple(_get(data, "types") or ())
  if fixed:
    return fixed
  names = set()
  for raw in tuple(_get(data, "sources")) + tuple(_get(data, "eval_sources")):
    names |= declared_types(raw)
  return tuple(sorted(names))


def source_label(raw, index=0) -> str:
  """A source's name in tables: its `label`, else what it reads (TFDS name, folder, photos)."""
  kind, spec = _spec(raw, "source")
  if spec.get("label"):
    return str(spec["label"])
  if kind == "tfds":
    return f"{spec['name']}" + (f" σ={spec['sigma']:g}" if spec.get("sigma") is not None else "")
  if kind == "samples":
    return f"samples_{index}"
  path = _plain(spec["path"])
  path = path[0] if isinstance(path, (list, tuple)) else path
  return os.path.basename(os.path.normpath(str(path))) or str(path)


def source_labels(data, field) -> tuple[str, ...]:
  return tuple(source_label(raw, i) for i, raw in enumerate(tuple(_get(data, field))))


def build_input(raw, *, min_size=0, on_error="skip", validate=True, where="source",
                max_pixels=None) -> pipeline.Input:
  kind, spec = _spec(raw, where)
  weight = float(spec.pop("weight", 1.0))
  spec.pop("label", None)
  degradations = _plain(spec.pop("degradations", None))
  if kind == "folder":
    src = sources.FolderSource(spec["path"], min_size=min_size, on_error=on_error, validate=validate,
                               max_pixels=max_pixels,
                               type_name=spec.get("type", ""))
  elif kind == "paired":
    options = {k: spec[k] for k in ("degraded_dirs", "clean_dirs", "pattern", "template") if k in spec}
    if spec.get("type"):
      options["type_name"] = spec["type"]
    src = sources.PairedFolderSource(spec["path"], spec.get("layout", "relative"), min_size=min_size,
                                     on_error=on_error, validate=validate, sigma=spec.get("sigma"),
                                     max_pixels=max_pixels, **options)
  elif kind == "tfds":
    from jaxdeg.data.tfds import TfdsSource
    src = TfdsSource(spec["name"], split=spec.get("split", "test"), data_dir=spec.get("data_dir"),
                     manual_dir=spec.get("manual_dir"), sigma=spec.get("sigma", 25.0))
  elif kind == "array_record":
    src = sources.ArrayRecordSource(_plain(spec["path"]))
  else:
    src = samples.SamplePhotos(spec["photos"])
  return pipeline.Input(src, weight=weight, degradations=degradations,
                        max_pixels=max_pixels)


def _inputs(data, field, min_size):
  on_error = check_on_error(_get(data, "on_error"))
  specs = tuple(_get(data, field))
  if not specs:
    raise ConfigError(f"config.data.{field} is empty: name at least one data source")
  return [build_input(s, min_size=min_size, on_error=on_error, validate=_get(data, "validate"),
                      max_pixels=_get(data, "max_pixels"),
                      where=f"config.data.{field}[{i}]") for i, s in enumerate(specs)]


def _resize(data, crop_field):
  """(resize, min_size, meta_fields) for config.data.resize: resized images are never too small and
  carry their μ/σ."""
  size, crop = _get(data, "resize"), _get(data, crop_field)
  meta = tuple(_get(data, "meta_fields"))
  if not size:
    return 0, crop, meta
  if isinstance(size, bool) or not isinstance(size, int) or size < crop:
    raise ConfigError(f"config.data.resize={size!r}: must be 0 (crop at full resolution) or an integer ≥ "
                      f"config.data.{crop_field}={crop}")
  return size, 0, meta + tuple(f for f in ("mu", "sigma") if f not in meta)


def train_data(config):
  """This process's infinite iterator dataset of training batches (grain, checkpointable)."""
  data = config.data
  crop = _get(data, "crop")
  resize, min_size, meta_fields = _resize(data, "crop")
  return pipeline.train_dataset(
      _inputs(data, "sources", min_size), crop=crop, global_batch_size=config.train.batch_size,
      seed=config.seed, worker_count=_get(data, "worker_count"), flip=_get(data, "flip"),
      degraded_key=_get(data, "degraded_key"), on_error=_get(data, "on_error"), type_names=type_names(data),
      meta_fields=meta_fields, read_threads=_get(data, "read_threads"), resize=resize)


class EvalData:
  """Re-iterable eval batches: sources are opened (and checked) once, iterated every evaluation.

  `full_resolution`: single uncropped examples instead (pipeline.eval_examples), any size."""

  def __init__(self, config, full_resolution=False):
    data = config.data
    self.crop = None if full_resolution else _get(data, "eval_crop")
    # full resolution evaluates the images as they are; crops see what training sees
    self.resize, min_size, meta_fields = (0, 0, tuple(_get(data, "meta_fields"))) if full_resolution \
        else _resize(data, "eval_crop")
    self.inputs = _inputs(data, "eval_sources", min_size)
    self.batch_size = config.eval.batch_size
    self.kwargs = dict(on_error=_get(data, "on_error"), type_names=type_names(data), meta_fields=meta_fields)

  def __iter__(self):
    if self.crop is None:
      return pipeline.eval_examples(self.inputs, **self.kwargs)
    return pipeline.eval_dataset(self.inputs, crop=self.crop, global_batch_size=self.batch_size,
                                 resize=self.resize, **self.kwargs)


def eval_data(config, full_resolution=False) -> EvalData:
  """This process's finite eval batches (each with 'index' and 'mask'), or with `full_resolution`
  every eval example uncropped, one at a time (with 'index'); iterate it once per eval."""
  return EvalData(config, full_resolution)
