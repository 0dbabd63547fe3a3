"""One TFDS builder per benchmark layout (layouts.py), prepared from a manual folder.

Splits are found by folder name under manual_dir (e.g. LOL `our485/` -> train, `eval15/` -> test);
a manual_dir without them is one split, 'test'. Pairing and the checks on bad files are those of
`PairedFolderSource`: skipped files are logged and counted while preparing.
"""
import os

import numpy as np
import tensorflow_datasets as tfds

from jaxdeg.data import layouts
from jaxdeg.data.sources import PairedFolderSource

_INSTRUCTIONS = "Place the {title} files in manual_dir in this layout:\n{layout}\n"


class _PairBenchmark(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  LAYOUT = "relative"
  TITLE = ""
  SPLIT_DIRS: dict = {}
  META_KEYS: tuple = ()
  LAYOUT_DOC = ""

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self):
    features = {"clean": tfds.features.Image(), "name": tfds.features.Text(), "type": tfds.features.Text(),
                "meta": {k: tfds.features.Scalar(np.float32) for k in self.META_KEYS}}
    if not layouts.PRESETS[self.LAYOUT].synthetic_noise:
      features["degraded"] = tfds.features.Image()
    return self.dataset_info_from_configs(
        description=f"{self.TITLE} pairs in the layout of layouts.PRESETS[{self.LAYOUT!r}].",
        features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    found = {split: os.path.join(root, sub) for split, sub in self.SPLIT_DIRS.items()
             if os.path.isdir(os.path.join(root, sub))}
    return {split: self._generate_examples(path) for split, path in (found or {"test": root}).items()}

  def _generate_examples(self, root):
    source = PairedFolderSource(root, self.LAYOUT)
    for degraded, clean, meta in source.pairs:
      rel = os.path.relpath(degraded or clean, root)
      ex = {"clean": clean, "name": rel, "type": source.rule.type_name,
            "meta": {k: np.float32(meta.get(k, np.nan)) for k in self.META_KEYS}}
      if degraded is not None:
        ex["degraded"] = degraded
      yield rel, ex


class JaxdegSots(_PairBenchmark):
  """RESIDE SOTS (dehazing): hazy/<id>_<A>_<beta>.jpg <-> clear/<id>.png (or gt/)."""
  name = "jaxdeg_sots"
  LAYOUT, TITLE, META_KEYS = "sots", "RESIDE SOTS", ("A", "beta")
  SPLIT_DIRS = {"indoor": "indoor", "outdoor": "outdoor"}
  LAYOUT_DOC = "  [indoor/|outdoor/]hazy/0001_0.8_0.2.jpg and [indoor/|outdoor/]clear/0001.png (or gt/)"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(title=TITLE, layout=LAYOUT_DOC)


class JaxdegRain100l(_PairBenchmark):
  """Rain100L (deraining): rain/rain-001.png <-> norain/norain-001.png."""
  name = "jaxdeg_rain100l"
  LAYOUT, TITLE = "rain100l", "Rain100L"
  SPLIT_DIRS = {"train": "train", "test": "test"}
  LAYOUT_DOC = "  [train/|test/]rain/rain-001.png and [train/|test/]norain/norain-001.png"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(title=TITLE, layout=LAYOUT_DOC)


class JaxdegLol(_PairBenchmark):
  """LOL (low-light): low/<name> <-> high/<name>."""
  name = "jaxdeg_lol"
  LAYOUT, TITLE = "lol", "LOL"
  SPLIT_DIRS = {"train": "our485", "test": "eval15"}
  LAYOUT_DOC = "  our485/low/1.png, our485/high/1.png, eval15/low/1.png, eval15/high/1.png"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(title=TITLE, layout=LAYOUT_DOC)


class JaxdegGopro(_PairBenchmark):
  """GoPro (motion deblurring): <scene>/blur/<name> <-> <scene>/sharp/<name>."""
  name = "jaxdeg_gopro"
  LAYOUT, TITLE = "gopro", "GoPro"
  SPLIT_DIRS = {"train": "train", "test": "test"}
  LAYOUT_DOC = "  train/GOPR0372_07_00/blur/000047.png and train/GOPR0372_07_00/sharp/000047.png (same for test/)"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(title=TITLE, layout=LAYOUT_DOC)


class JaxdegBsd68(_PairBenchmark):
  """BSD68 (denoising): clean images only; the reader adds Gaussian noise of a chosen sigma."""
  name = "jaxdeg_bsd68"
  LAYOUT, TITLE = "bsd68", "BSD68"
  LAYOUT_DOC = "  test001.png ... test068.png (any folder of clean images)"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(title=TITLE, layout=LAYOUT_DOC)
