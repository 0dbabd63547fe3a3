"""AV1 film grain parameters: the `film_grain_params` of the AV1 spec (5.9.30), libaom's 16 test
presets, and the ASCII `filmgrn1` grain tables that `aomenc --film-grain-table` reads and writes.

Values are stored as coded in the bitstream: ar_coeffs are signed (-128..127), cb/cr mult and
luma_mult are 0..255 with 128 meaning 0, cb/cr offset is 0..511 with 256 meaning 0.
"""
import dataclasses
import os

import numpy as np

from jaxdeg.degrade.film_grain_data import TEST_VECTORS
from jaxdeg.errors import ConfigError, DataError

_INT_RANGES = {
  "random_seed": (0, 65535), "ar_coeff_lag": (0, 3), "ar_coeff_shift": (6, 9),
  "grain_scale_shift": (0, 3), "scaling_shift": (8, 11), "chroma_scaling_from_luma": (0, 1),
  "overlap_flag": (0, 1), "clip_to_restricted_range": (0, 1), "cb_mult": (0, 255),
  "cb_luma_mult": (0, 255), "cb_offset": (0, 511), "cr_mult": (0, 255), "cr_luma_mult": (0, 255),
  "cr_offset": (0, 511),
}
_MAX_POINTS = {"scaling_points_y": 14, "scaling_points_cb": 10, "scaling_points_cr": 10}


@dataclasses.dataclass(frozen=True)
class FilmGrainParams:
  """One AV1 film grain parameter set (hashable, so it can be a static argument under jit)."""
  random_seed: int = 0
  ar_coeff_lag: int = 0
  ar_coeff_shift: int = 6
  grain_scale_shift: int = 0
  scaling_shift: int = 8
  chroma_scaling_from_luma: int = 0
  overlap_flag: int = 0
  clip_to_restricted_range: int = 0
  cb_mult: int = 128
  cb_luma_mult: int = 192
  cb_offset: int = 256
  cr_mult: int = 128
  cr_luma_mult: int = 192
  cr_offset: int = 256
  scaling_points_y: tuple = ()
  scaling_points_cb: tuple = ()
  scaling_points_cr: tuple = ()
  ar_coeffs_y: tuple = None
  ar_coeffs_cb: tuple = None
  ar_coeffs_cr: tuple = None

  def __post_init__(self):
    for name, (lo, hi) in _INT_RANGES.items():
      v = getattr(self, name)
      if isinstance(v, (bool, np.bool_)):
        v = int(v)
      if not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ConfigError(f"FilmGrainParams.{name}={v!r}: expected an integer in [{lo}, {hi}]")
      object.__setattr__(self, name, int(v))
    for name, most in _MAX_POINTS.items():
      pts = _int_pairs(getattr(self, name), name)
      if len(pts) > most:
        raise ConfigError(f"FilmGrainParams.{name}: at most {most} points, got {len(pts)}")
      xs = [x for x, _ in pts]
      if any(not (0 <= x <= 255 and 0 <= y <= 255) for x, y in pts) or xs != sorted(set(xs)):
        raise ConfigError(f"FilmGrainParams.{name}={pts}: points need x strictly increasing and "
                          "x, y in [0, 255]")
      object.__setattr__(self, name, pts)
    if self.chroma_scaling_from_luma and (self.scaling_points_cb or self.scaling_points_cr):
      raise ConfigError("FilmGrainParams: chroma_scaling_from_luma=1 requires no cb/cr scaling points")
    n = self.num_pos_luma
    for name, want in (("ar_coeffs_y", n), ("ar_coeffs_cb", n + 1), ("ar_coeffs_cr", n + 1)):
      c = getattr(self, name)
      c = (0,) * want if c is None else tuple(int(v) for v in c)
      if len(c) != want or any(not -128 <= v <= 127 for v in c):
        raise ConfigError(f"FilmGrainParams.{name}: expected {want} integers in [-128, 127] for "
                          f"ar_coeff_lag={self.ar_coeff_lag}, got {c}")
      object.__setattr__(self, name, c)

  @property
  def num_pos_luma(self):
    return 2 * self.ar_coeff_lag * (self.ar_coeff_lag + 1)

  @property
  def apply_y(self):
    return bool(self.scaling_points_y)

  @property
  def apply_cb(self):
    return bool(self.scaling_points_cb) or bool(self.chroma_scaling_from_luma)

  @property
  def apply_cr(self):
    return bool(self.scaling_points_cr) or bool(self.chroma_scaling_from_luma)

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d):
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ConfigError(f"FilmGrainParams: unknown field(s) {sorted(unknown)}")
    return cls(**d)


def _int_pairs(pts, name):
  try:
    out = tuple((int(x), int(y)) for x, y in pts)
  except (TypeError, ValueError):
    raise ConfigError(f"FilmGrainParams.{name}={pts!r}: expected a sequence of (x, y) pairs") from None
  return out


def preset(n: int) -> FilmGrainParams:
  """libaom's `--film-grain-test=n` parameter set, n in 1..16."""
  if not isinstance(n, (int, np.integer)) or not 1 <= n <= len(TEST_VECTORS):
    raise ConfigError(f"film grain preset {n!r}: expected an integer in [1, {len(TEST_VECTORS)}]")
  return FilmGrainParams(**TEST_VECTORS[int(n) - 1])


def as_params(p) -> FilmGrainParams:
  """Accept a FilmGrainParams, a dict of its fields, a preset number, or a grain table path."""
  if isinstance(p, FilmGrainParams):
    return p
  if isinstance(p, dict):
    return FilmGrainParams.from_dict(p)
  if isinstance(p, (int, np.integer)) and not isinstance(p, bool):
    return preset(p)
  if isinstance(p, (str, os.PathLike)):
    applied = [s.params for s in read_grain_table(p) if s.apply_grain]
    if not applied:
      raise DataError(f"grain table {os.fspath(p)}: no segment applies grain")
    return applied[0]
  raise ConfigError(f"film grain params {p!r}: expected FilmGrainParams, a dict, a preset number 1..16 "
                    "or a grain table path")


def scaling_lut(points) -> np.ndarray:
  """The 256-entry piecewise-linear scaling function (spec 7.18.3.4, dav1d's integer arithmetic)."""
  lut = np.zeros(256, np.int32)
  if not points:
    return lut
  lut[:points[0][0]] = points[0][1]
  for (bx, by), (ex, ey) in zip(points[:-1], points[1:]):
    dx = ex - bx
    delta = (ey - by) * ((0x10000 + (dx >> 1)) // dx)
    for x in range(dx):
      lut[bx + x] = by + ((x * delta + 0x8000) >> 16)
  lut[points[-1][0]:] = points[-1][1]
  return lut


# ---- filmgrn1 grain tables -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GrainTableSegment:
  """One `E` entry: grain parameters for presentation times [start_time, end_time) (10 MHz ticks)."""
  start_time: int
  end_time: int
  params: FilmGrainParams
  apply_grain: bool = True
  update_parameters: bool = True


def format_grain_table(segments) -> str:
  """The text aomenc writes. The format has no clip_to_restricted_range field: it is not stored."""
  out = ["filmgrn1"]
  for s in segments:
    p = s.params
    out.append(f"E {s.start_time} {s.end_time} {int(s.apply_grain)} {p.random_seed} "
               f"{int(s.update_parameters)}")
    if not s.update_parameters:
      continue
    out.append(f"\tp {p.ar_coeff_lag} {p.ar_coeff_shift} {p.grain_scale_shift} {p.scaling_shift} "
               f"{p.chroma_scaling_from_luma} {p.overlap_flag} {p.cb_mult} {p.cb_luma_mult} "
               f"{p.cb_offset} {p.cr_mult} {p.cr_luma_mult} {p.cr_offset}")
    # Spacing copies libaom's fprintf calls byte for byte ("sY n " then " x y" per point).
    out.append(f"\tsY {len(p.scaling_points_y)} " + "".join(f" {x} {y}" for x, y in p.scaling_points_y))
    for tag, pts in (("sCb", p.scaling_points_cb), ("sCr", p.scaling_points_cr)):
      out.append(f"\t{tag} {len(pts)}" + "".join(f" {x} {y}" for x, y in pts))
    for tag, c in (("cY", p.ar_coeffs_y), ("cCb", p.ar_coeffs_cb), ("cCr", p.ar_coeffs_cr)):
      out.append(f"\t{tag}" + "".join(f" {v}" for v in c))
  return "\n".join(out) + "\n"


def write_grain_table(path, segments) -> None:
  with open(path, "w") as f:
    f.write(format_grain_table(segments))


def read_grain_table(path) -> list[GrainTableSegment]:
  try:
    with open(path) as f:
      text = f.read()
  except OSError as e:
    raise DataError(f"grain table {os.fspath(path)}: cannot read ({e.strerror})") from None
  return parse_grain_table(text, source=os.fspath(path))


def parse_grain_table(text: str, source: str = "<grain table>") -> list[GrainTableSegment]:
  """Parse `filmgrn1` text; a segment with update_parameters=0 inherits the previous parameters."""
  lines = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
  if not lines or lines[0][1] != ["filmgrn1"]:
    raise DataError(f"{source}: not a film grain table (first line must be 'filmgrn1')")
  segments, prev, k = [], None, 1

  def ints(lineno, toks, tag, count=None):
    if not toks or toks[0] != tag:
      raise DataError(f"{source}:{lineno}: expected a '{tag}' line, got {' '.join(toks)!r}")
    try:
      vals = [int(t) for t in toks[1:]]
    except ValueError:
      raise DataError(f"{source}:{lineno}: '{tag}' line has a non-integer value") from None
    if count is not None and len(vals) != count:
      raise DataError(f"{source}:{lineno}: '{tag}' line needs {count} values, has {len(vals)}")
    return vals

  def points(lineno, toks, tag):
    vals = ints(lineno, toks, tag)
    if not vals or len(vals) != 1 + 2 * vals[0]:
      raise DataError(f"{source}:{lineno}: '{tag}' line needs a count n then n (x, y) pairs")
    return tuple(zip(vals[1::2], vals[2::2]))

  while k < len(lines):
    lineno, toks = lines[k]
    start, end, apply, seed, update = ints(lineno, toks, "E", 5)
    k += 1
    try:
      if update:
        if k + 7 > len(lines):
          raise DataError(f"{source}:{lineno}: segment is cut short (needs p, sY, sCb, sCr, cY, cCb, cCr)")
        p = ints(*lines[k], "p", 12)
        fields = dict(zip(("ar_coeff_lag", "ar_coeff_shift", "grain_scale_shift", "scaling_shift",
                           "chroma_scaling_from_luma", "overlap_flag", "cb_mult", "cb_luma_mult",
                           "cb_offset", "cr_mult", "cr_luma_mult", "cr_offset"), p))
        fields["scaling_points_y"] = points(*lines[k + 1], "sY")
        fields["scaling_points_cb"] = points(*lines[k + 2], "sCb")
        fields["scaling_points_cr"] = points(*lines[k + 3], "sCr")
        fields["ar_coeffs_y"] = tuple(ints(*lines[k + 4], "cY"))
        fields["ar_coeffs_cb"] = tuple(ints(*lines[k + 5], "cCb"))
        fields["ar_coeffs_cr"] = tuple(ints(*lines[k + 6], "cCr"))
        params = FilmGrainParams(random_seed=seed & 0xFFFF, **fields)
        k += 7
      elif prev is None:
        raise DataError(f"{source}:{lineno}: first segment has update_parameters=0")
      else:
        params = prev.replace(random_seed=seed & 0xFFFF)
    except ConfigError as e:
      raise DataError(f"{source}:{lineno}: {e}") from None
    segments.append(GrainTableSegment(start, end, params, bool(apply), bool(update)))
    prev = params
  return segments
