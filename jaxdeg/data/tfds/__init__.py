"""TFDS builders for the standard pair benchmarks, prepared from local folders as ArrayRecord.

    source = jaxdeg.data.tfds.TfdsSource("sots", split="indoor", manual_dir="/data/SOTS",
                                         data_dir="/data/tfds")

The first use prepares the dataset (`file_format='array_record'`) from `manual_dir`; later uses
read it with `tfds.data_source`. TensorFlow Datasets is imported only here, when a TFDS source is
built, so the rest of jaxdeg.data works without it. Images are stored as the original file bytes
and decoded by the jaxdeg pipeline (Pillow), like folder sources.
"""
from jaxdeg.errors import DataError

# Short name -> registered TFDS name (builders.py).
BUILDERS = {"sots": "jaxdeg_sots", "rain100l": "jaxdeg_rain100l", "lol": "jaxdeg_lol",
            "gopro": "jaxdeg_gopro", "bsd68": "jaxdeg_bsd68"}


def registered_name(name):
  if name in BUILDERS:
    return BUILDERS[name]
  if name.split("/")[0].split(":")[0] in BUILDERS.values():
    return name
  raise DataError(f"unknown TFDS benchmark {name!r}; jaxdeg builds {', '.join(BUILDERS)}")


def _load(name, split, data_dir, manual_dir):
  import tensorflow_datasets as tfds
  from jaxdeg.data.tfds import builders  # noqa: F401  (registers the builders)
  full = registered_name(name)
  kwargs = {}
  if manual_dir is not None:
    kwargs["download_config"] = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  builder = tfds.builder(full, data_dir=data_dir, file_format="array_record")
  if not builder.is_prepared():
    if manual_dir is None:
      raise DataError(f"TFDS dataset {full} is not prepared in {builder.data_dir}: pass its manual_dir "
                      f"(the folder holding the {name} files) once to prepare it")
    builder.download_and_prepare(**kwargs)
  if split not in builder.info.splits:
    raise DataError(f"TFDS dataset {full}: no split {split!r}; available: {', '.join(builder.info.splits)}")
  images = {k: tfds.decode.SkipDecoding() for k in ("clean", "degraded") if k in builder.info.features}
  return builder.as_data_source(split=split, decoders=images)


class TfdsSource:
  """Random-access pairs from a jaxdeg TFDS benchmark builder (undecoded records, see sources.py).

  `sigma` is the synthetic noise level (0-255 scale) for bsd68, which stores clean images only.
  """
  paired = True

  def __init__(self, name, *, split="test", data_dir=None, manual_dir=None, sigma=25.0):
    self.name, self.split, self.sigma = registered_name(name), split, float(sigma)
    self._source = _load(name, split, data_dir, manual_dir)
    if len(self._source) == 0:
      raise DataError(f"TFDS dataset {self.name} split {split!r} has no examples")

  @property
  def type_names(self):
    from jaxdeg.data import layouts
    short = {v: k for k, v in BUILDERS.items()}[self.name.split("/")[0].split(":")[0]]
    return (layouts.PRESETS[short].type_name,)

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    ex = self._source[index]
    name = _text(ex["name"])
    rec = {"clean": bytes(ex["clean"]), "name": f"{self.name}/{self.split}/{name}", "type": _text(ex["type"]),
           "meta": {k: float(v) for k, v in ex.get("meta", {}).items()}}
    if "degraded" in ex:
      rec["degraded"] = bytes(ex["degraded"])
    else:
      rec["noise_sigma"] = self.sigma
      rec["meta"]["sigma"] = self.sigma
    return rec

  def __repr__(self):
    return f"TfdsSource({self.name!r}, split={self.split!r}, {len(self)} examples)"


def _text(v):
  return v.decode() if isinstance(v, bytes) else str(v)
