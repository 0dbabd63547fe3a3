"""GenDeg's intensity sampler: per-source histograms of (μ, σ) bins fitted on training pairs.

For each source (a dataset, named '<type>/<dataset>', or a degradation type of the procedural
generator) we keep the joint counts of (μ bin, σ bin) over its pairs (128 × 128, bins of
`jaxdeg.degrade.intensity`), and the μ and σ histograms, which are the joint's marginals unless a
file says otherwise (GenDeg's official files count them separately: `official_histograms.py`).
A draw, as GenDeg's GenDS script does: a uniform one takes μ uniform over the source's non-empty μ
range and σ over its non-empty σ range; otherwise a μ bin from the μ histogram and a σ bin from the
joint's row of that μ bin, each value uniform within its bin. The caller passes the numpy
Generator (seeded per job by the synthesis plan, `plan.py`) and whether the draw is uniform.
"""
import json
import os

import numpy as np

from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError

N = intensity.NUM_BINS


def _bins(values, value_range):
  lo, hi = value_range
  return np.clip(np.floor((np.asarray(values, np.float64) - lo) / (hi - lo) * N), 0, N - 1).astype(int)


def _uniform_in_bin(rng, index, value_range):
  lo, hi = value_range
  width = (hi - lo) / N
  return lo + (index + rng.uniform()) * width


class IntensityHistograms:
  """{source: (128, 128) joint counts of (μ bin, σ bin)}; fit, save/load as JSON, sample."""

  def __init__(self, counts=None, calibration=None, marginals=None):
    self.counts = {k: np.asarray(v, np.int64) for k, v in (counts or {}).items()}
    # {source: (μ counts (128,), σ counts (128,))} where they are not the joint's marginals
    self.marginals = {k: (np.asarray(a, np.int64), np.asarray(b, np.int64)) for k, (a, b) in (marginals or {}).items()}
    # procedural sources: {type: (intensity centres, mean μ)} (see procedural.py)
    self.calibration = {k: (np.asarray(a, np.float32), np.asarray(b, np.float32))
                        for k, (a, b) in (calibration or {}).items()}

  def add(self, source, mu, sigma):
    """Counts the pairs with intensity statistics `mu`, `sigma` (arrays of equal length)."""
    joint = self.counts.setdefault(source, np.zeros((N, N), np.int64))
    np.add.at(joint, (_bins(mu, intensity.MU_RANGE), _bins(sigma, intensity.SIGMA_RANGE)), 1)

  @property
  def sources(self):
    return sorted(self.counts)

  def total(self, source):
    return int(self.mu_sigma_counts(source)[0].sum()) if source in self.counts else 0

  def mu_sigma_counts(self, source):
    """(μ histogram, σ histogram) of a source."""
    if source in self.marginals:
      return self.marginals[source]
    joint = self.counts[source]
    return joint.sum(1), joint.sum(0)

  def save(self, path):
    sparse = {k: [[int(i), int(j), int(v[i, j])] for i, j in zip(*np.nonzero(v))] for k, v in self.counts.items()}
    with open(path, "w") as f:
      json.dump({"bins": N, "mu_range": intensity.MU_RANGE, "sigma_range": intensity.SIGMA_RANGE,
                 "counts": sparse,
                 "marginals": {k: [a.tolist(), b.tolist()] for k, (a, b) in self.marginals.items()},
                 "calibration": {k: [a.tolist(), b.tolist()] for k, (a, b) in self.calibration.items()}}, f)

  @classmethod
  def load(cls, path):
    if not os.path.isfile(path):
      raise ConfigError(f"intensity histograms {path}: no such file (fit them with the synthesis config)")
    try:
      with open(path) as f:
        raw = json.load(f)
      if raw.get("bins") != N:
        raise ValueError(f"{raw.get('bins')} bins, expected {N}")
      counts = {}
      for source, entries in raw["counts"].items():
        joint = np.zeros((N, N), np.int64)
        for i, j, v in entries:
          joint[i, j] = v
        counts[source] = joint
    except (ValueError, KeyError, TypeError) as e:
      raise ConfigError(f"intensity histograms {path}: unreadable ({e})") from None
    return cls(counts, raw.get("calibration"), raw.get("marginals"))

  def sample(self, source, rng: np.random.Generator, uniform=False):
    """(μ, σ) for one request of `source`: uniform over its ranges, or from its histograms."""
    joint = self.counts.get(source)
    if joint is None or self.total(source) == 0:
      raise ConfigError(f"no intensity statistics for {source!r}; fitted sources: {', '.join(self.sources) or 'none'}")
    mu_hist, sigma_hist = self.mu_sigma_counts(source)
    if uniform:
      mu = _range_uniform(rng, np.nonzero(mu_hist)[0], intensity.MU_RANGE)
      sigma = _range_uniform(rng, np.nonzero(sigma_hist)[0], intensity.SIGMA_RANGE)
      return mu, sigma
    mu_bin = rng.choice(N, p=mu_hist / mu_hist.sum())
    # σ given the μ bin; a row left empty by separately counted files (where GenDeg's script would
    # fail) falls back to the σ histogram
    conditional = joint[mu_bin] if joint[mu_bin].sum() else sigma_hist
    sigma_bin = rng.choice(N, p=conditional / conditional.sum())
    return (_uniform_in_bin(rng, mu_bin, intensity.MU_RANGE),
            _uniform_in_bin(rng, sigma_bin, intensity.SIGMA_RANGE))


def _range_uniform(rng, bins, value_range):
  lo, hi = value_range
  width = (hi - lo) / N
  return rng.uniform(lo + bins.min() * width, lo + (bins.max() + 1) * width)
