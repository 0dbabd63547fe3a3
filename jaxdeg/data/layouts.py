"""How clean and degraded files pair up in a folder: a generic rule and the benchmark presets.

A rule names the directories that hold degraded and clean images (at any depth: GoPro keeps
`<scene>/blur` next to `<scene>/sharp`), and optionally a regular expression on the degraded
file's stem whose named groups build the clean stem through a template (RESIDE/SOTS:
`0001_0.8_0.2` -> `0001`; Rain100L: `rain-001` -> `norain-001`). Other named groups become
numeric metadata of the pair (SOTS: atmospheric light A and scattering beta). Extensions are
ignored when matching (hazy JPEG <-> clear PNG).

Presets (pass `layout=` to `PairedFolderSource` or use the TFDS builders):
  relative   degraded/<path> <-> clean/<path>
  sots       hazy/<id>_<A>_<beta>.* <-> clear|gt/<id>.*          type haze
  rain100l   rain|rainy/rain-<id>.* <-> norain/norain-<id>.*     type rain
  lol        low/<name> <-> high/<name>                          type low_light
  gopro      <scene>/blur/<name> <-> <scene>/sharp/<name>        type motion_blur
  bsd68      clean images only; degraded = clean + N(0, (sigma/255)²), fixed per image
"""
import dataclasses
import os
import re

from jaxdeg.data.images import EXTENSIONS
from jaxdeg.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PairRule:
  degraded_dirs: tuple[str, ...] = ("degraded",)
  clean_dirs: tuple[str, ...] = ("clean",)
  pattern: str | None = None          # regex on the degraded stem (fullmatch), named groups
  template: str | None = None         # clean stem from the groups, e.g. "{id}"
  type_name: str = ""
  synthetic_noise: bool = False       # clean-only layout, noise added when read (BSD68)
  default_sigma: float = 25.0

  def clean_stem(self, degraded_stem):
    """(clean stem, metadata) or None when the name does not fit the pattern."""
    if not self.pattern:
      return degraded_stem, {}
    m = re.fullmatch(self.pattern, degraded_stem)
    if not m:
      return None
    groups = m.groupdict()
    meta = {}
    for k, v in groups.items():
      try:
        meta[k] = float(v)
      except (TypeError, ValueError):
        pass
    return (self.template or "{id}").format(**groups), meta


PRESETS = {
    "relative": PairRule(),
    "sots": PairRule(("hazy",), ("clear", "gt"), r"(?P<id>[^_]+)_(?P<A>[0-9.]+)_(?P<beta>[0-9.]+)", "{id}",
                     type_name="haze"),
    "rain100l": PairRule(("rain", "rainy"), ("norain",), r"(?:no)?rain-(?P<id>.+)", "norain-{id}",
                         type_name="rain"),
    "lol": PairRule(("low",), ("high",), type_name="low_light"),
    "gopro": PairRule(("blur",), ("sharp",), type_name="motion_blur"),
    "bsd68": PairRule((), (), type_name="gaussian_noise", synthetic_noise=True),
}


def rule_for(layout="relative", **overrides) -> PairRule:
  if layout not in PRESETS:
    raise ConfigError(f"unknown pair layout {layout!r}; available: {', '.join(PRESETS)}")
  fields = {k: v for k, v in overrides.items() if v is not None}
  for k in ("degraded_dirs", "clean_dirs"):
    if isinstance(fields.get(k), str):
      fields[k] = (fields[k],)
    elif k in fields:
      fields[k] = tuple(fields[k])
  unknown = set(fields) - {f.name for f in dataclasses.fields(PairRule)}
  if unknown:
    raise ConfigError(f"pair layout {layout!r}: unknown option(s) {sorted(unknown)}")
  return dataclasses.replace(PRESETS[layout], **fields)


def list_images(root) -> list[str]:
  """Every image file under `root` (recursive, by extension), relative paths, sorted."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames.sort()
    for f in filenames:
      if f.lower().endswith(EXTENSIONS) and not f.startswith("."):
        found.append(os.path.relpath(os.path.join(dirpath, f), root))
  return sorted(found)


def list_files(root) -> list[str]:
  """Every non-hidden file under root: images and the things that only look like them."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    found += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames if not f.startswith(".")]
  return sorted(found)


def _split(rel, dirs):
  """(parts before, parts after) around the last path component in `dirs`, or None."""
  parts = rel.split(os.sep)
  for i in range(len(parts) - 2, -1, -1):
    if parts[i] in dirs:
      return tuple(parts[:i]), tuple(parts[i + 1:])
  return None


def _key(prefix, rest, stem):
  return prefix + rest[:-1] + (stem,)


def match_pairs(root, rule: PairRule):
  """-> (pairs, unmatched). pairs: [(degraded_rel, clean_rel, metadata)], sorted by degraded path;
  unmatched: [(rel, why)] for degraded files without a clean partner and clean files that no
  degraded file uses."""
  files = list_images(root)
  if rule.synthetic_noise:
    return [(None, f, {}) for f in files], []
  clean_by_key, degraded, outside = {}, [], []
  for rel in files:
    c = _split(rel, rule.clean_dirs)
    if c is not None:
      stem = os.path.splitext(c[1][-1])[0]
      clean_by_key.setdefault(_key(*c, stem), rel)
      continue
    d = _split(rel, rule.degraded_dirs)
    if d is not None:
      degraded.append((rel, d))
    else:
      outside.append((rel, f"not inside a degraded ({'|'.join(rule.degraded_dirs)}) or clean "
                           f"({'|'.join(rule.clean_dirs)}) folder"))
  pairs, unmatched, used = [], outside, set()
  for rel, (prefix, rest) in degraded:
    mapped = rule.clean_stem(os.path.splitext(rest[-1])[0])
    if mapped is None:
      unmatched.append((rel, f"name does not match the pattern {rule.pattern!r}"))
      continue
    stem, meta = mapped
    clean = clean_by_key.get(_key(prefix, rest, stem))
    if clean is None:
      unmatched.append((rel, f"no clean image named {stem}.* in {'|'.join(rule.clean_dirs)}/"))
      continue
    used.add(clean)
    pairs.append((rel, clean, meta))
  for clean in sorted(set(clean_by_key.values()) - used):
    unmatched.append((clean, f"no degraded image in {'|'.join(rule.degraded_dirs)}/ pairs with it"))
  return pairs, unmatched
