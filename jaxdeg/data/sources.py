"""Random-access sources of image records (grain protocol: `__len__`, `__getitem__`).

A source returns *undecoded* records, so indexing is cheap and decoding runs in the pipeline
(and in its worker processes):

  {'clean': path | bytes | array, 'degraded': path | bytes | array (paired sources only),
   'name': str (for messages), 'type': str (degradation label, '' if unknown),
   'meta': {str: number}, 'noise_sigma': float (BSD68-style synthetic noise, optional)}

Folder sources are checked when built: files are listed, and each is opened to read its size and
run Pillow's `verify` (a thread pool does this; `validate=False` only lists, and everything is then
checked when decoded). Bad files are skipped
(and counted, see skips.py) or raise, per `on_error`; a folder left with no usable image raises.
"""
import concurrent.futures
import os

import grain

from jaxdeg.data import layouts, records, skips
from jaxdeg.data.images import EXTENSIONS, probe_image
from jaxdeg.data.skips import BadRecord
from jaxdeg.errors import DataError

_THREADS = 8


def _probe_all(paths, names, verify, max_pixels=None):
  """[(height, width) or BadRecord] for each path, read in parallel."""
  def probe(args):
    try:
      return probe_image(*args, verify=verify, max_pixels=max_pixels)
    except BadRecord as e:
      return e
  with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
    return list(pool.map(probe, zip(paths, names)))


def _report_other_files(root, images, on_error):
  """Files under a source folder that are not images by extension: counted, never read."""
  others = sorted(set(layouts.list_files(root)) - set(images))
  for rel in others:
    skips.record_prescan(BadRecord(os.path.join(root, rel), "not_an_image",
                                   f"extension not one of {' '.join(EXTENSIONS)}"), on_error)


def _require_dir(path, what):
  if not os.path.isdir(path):
    raise DataError(f"{what} {path}: no such folder")
  return os.path.abspath(path)


def _no_usable(root, listed, what):
  return DataError(f"{what} {root}: no usable image ({listed} files listed, all skipped; see the "
                   "warnings above or data_skips.json)" if listed else f"{what} {root}: no image files found "
                   f"(looked for {' '.join(EXTENSIONS)}, recursively)")


class FolderSource:
  """Clean images under a folder (recursive); degradations are made by the pipeline."""
  paired = False

  def __init__(self, path, *, min_size=0, on_error="skip", validate=True, type_name="", max_pixels=None):
    self.root = _require_dir(path, "image folder")
    self.type_name = type_name
    skips.check_on_error(on_error)
    images = layouts.list_images(self.root)
    _report_other_files(self.root, images, on_error)
    full = [os.path.join(self.root, r) for r in images]
    sizes = _probe_all(full, full, True, max_pixels) if validate else [None] * len(full)
    self.paths = []
    for path, size in zip(full, sizes):
      if isinstance(size, BadRecord):
        skips.record_prescan(size, on_error)
      elif size is not None and min(size) < min_size:
        skips.record_prescan(BadRecord(path, "too_small", f"{size[0]}x{size[1]} < {min_size}"), on_error)
      else:
        self.paths.append(path)
    if not self.paths:
      raise _no_usable(self.root, len(images), "image folder")

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    path = self.paths[index]
    return {"clean": path, "name": path, "type": self.type_name, "meta": {}}

  @property
  def type_names(self):
    return (self.type_name,) if self.type_name else ()

  def __repr__(self):
    return f"FolderSource({self.root!r}, {len(self)} images)"


class PairedFolderSource:
  """Clean/degraded pairs in a folder, matched by a layout (see layouts.py).

  `layout` is a preset name; keyword options (`degraded_dirs`, `clean_dirs`, `pattern`, `template`,
  `type_name`) override its fields. `sigma` is the noise level (0-255 scale) of the bsd68 layout.
  """
  paired = True

  def __init__(self, path, layout="relative", *, min_size=0, on_error="skip", validate=True,
               sigma=None, max_pixels=None, **rule_options):
    self.root = _require_dir(path, f"{layout} folder")
    self.rule = layouts.rule_for(layout, **rule_options)
    self.layout = layout
    self.sigma = float(sigma if sigma is not None else self.rule.default_sigma)
    skips.check_on_error(on_error)
    pairs, unmatched = layouts.match_pairs(self.root, self.rule)
    _report_other_files(self.root, layouts.list_images(self.root), on_error)
    for rel, why in unmatched:
      skips.record_prescan(BadRecord(os.path.join(self.root, rel), "missing_partner", why), on_error)
    self.pairs = []
    join = lambda rel: None if rel is None else os.path.join(self.root, rel)  # noqa: E731
    pairs = [(join(d), join(c), meta) for d, c, meta in pairs]
    if validate:
      files = sorted({p for d, c, _ in pairs for p in (d, c) if p is not None})
      sizes = dict(zip(files, _probe_all(files, files, True, max_pixels)))
    else:
      sizes = {}
    for degraded, clean, meta in pairs:
      try:
        self._check(degraded, clean, sizes, min_size)
      except BadRecord as e:
        skips.record_prescan(e, on_error)
        continue
      self.pairs.append((degraded, clean, meta))
    if not self.pairs:
      raise _no_usable(self.root, len(pairs) + len(unmatched), f"{layout} folder")

  @staticmethod
  def _check(degraded, clean, sizes, min_size):
    if not sizes:
      return
    for p in (clean, degraded):
      if isinstance(sizes.get(p), BadRecord):
        raise sizes[p]
    c = sizes[clean]
    if degraded is not None and sizes[degraded] != c:
      d = sizes[degraded]
      raise BadRecord(degraded, "size_mismatch", f"{d[0]}x{d[1]} vs {c[0]}x{c[1]} of {clean}")
    if min(c) < min_size:
      raise BadRecord(degraded or clean, "too_small", f"{c[0]}x{c[1]} < {min_size}")

  def __len__(self):
    return len(self.pairs)

  def __getitem__(self, index):
    degraded, clean, meta = self.pairs[index]
    if self.rule.synthetic_noise:
      return {"clean": clean, "name": clean, "type": self.rule.type_name, "meta": {"sigma": self.sigma},
              "noise_sigma": self.sigma}
    return {"clean": clean, "degraded": degraded, "name": degraded, "type": self.rule.type_name,
            "meta": dict(meta)}

  @property
  def type_names(self):
    return (self.rule.type_name,) if self.rule.type_name else ()

  def __repr__(self):
    return f"PairedFolderSource({self.root!r}, layout={self.layout!r}, {len(self)} pairs)"


class ArrayRecordSource:
  """Pairs written by `records.RecordWriter`: every `*.array_record` file under a folder (or the
  given files), in sorted order. Records are unpacked and decoded by the pipeline."""

  def __init__(self, path_or_paths):
    if isinstance(path_or_paths, (str, os.PathLike)) and os.path.isdir(path_or_paths):
      root = os.path.abspath(path_or_paths)
      paths = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".array_record"))
      where = root
    else:
      paths = [os.fspath(path_or_paths)] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
      where = ", ".join(paths)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise DataError(f"ArrayRecord file(s) not found: {', '.join(missing)}")
    if not paths:
      raise DataError(f"ArrayRecord folder {where}: no *.array_record files")
    self.paths = paths
    self._source = grain.sources.ArrayRecordDataSource(paths)
    if len(self._source) == 0:
      raise DataError(f"ArrayRecord source {where}: no records")
    self.where = where
    self.paired = records.has_degraded(self._source[0])

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    return {"packed": self._source[index], "name": f"{self.where}#{index}"}

  def __repr__(self):
    return f"ArrayRecordSource({len(self.paths)} files, {len(self)} records)"
