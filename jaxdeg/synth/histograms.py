"""GenDeg's intensity sampler: per-source histograms of (μ, σ) bins fitted on training pairs.

For each source (a dataset, or a degradation type of the procedural generator) we keep the joint
counts of (μ bin, σ bin) over its pairs (128 × 128, bins of `jaxdeg.degrade.intensity`). A request
draws, as GenDeg's GenDS script does: every `uniform_every`-th request a μ uniform over the source's
non-empty μ range and σ uniform over its non-empty σ range; otherwise a μ bin from the μ histogram
and a σ bin from the σ histogram conditioned on that μ bin, each value uniform within its bin.
Draws use a numpy Generator seeded by (seed, job index), so a job's request never depends on
batching, process count or resumption.
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

  def __init__(self, counts=None, calibration=None):
    self.counts = {k: np.asarray(v, np.int64) for k, v in (counts or {}).items()}
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
    return int(self.counts[source].sum()) if source in self.counts else 0

  def save(self, path):
    sparse = {k: [[int(i), int(j), int(v[i, j])] for i, j in zip(*np.nonzero(v))] for k, v in self.counts.items()}
    with open(path, "w") as f:
      json.dump({"bins": N, "mu_range": intensity.MU_RANGE, "sigma_range": intensity.SIGMA_RANGE,
                 "counts": sparse,
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
    return cls(counts, raw.get("calibration"))

  def sample(self, source, seed, job, uniform_every=20):
    """(μ, σ) for request `job` of `source`."""
    joint = self.counts.get(source)
    if joint is None or joint.sum() == 0:
      raise ConfigError(f"no intensity statistics for {source!r}; fitted sources: {', '.join(self.sources) or 'none'}")
    rng = np.random.default_rng([int(seed), int(job)])
    mu_hist, sigma_hist = joint.sum(1), joint.sum(0)
    if uniform_every and job % uniform_every == uniform_every - 1:
      mu_bins, sigma_bins = np.nonzero(mu_hist)[0], np.nonzero(sigma_hist)[0]
      mu = _range_uniform(rng, mu_bins, intensity.MU_RANGE)
      sigma = _range_uniform(rng, sigma_bins, intensity.SIGMA_RANGE)
      return mu, sigma
    mu_bin = rng.choice(N, p=mu_hist / mu_hist.sum())
    conditional = joint[mu_bin]
    sigma_bin = rng.choice(N, p=conditional / conditional.sum())
    return (_uniform_in_bin(rng, mu_bin, intensity.MU_RANGE),
            _uniform_in_bin(rng, sigma_bin, intensity.SIGMA_RANGE))


def _range_uniform(rng, bins, value_range):
  lo, hi = value_range
  width = (hi - lo) / N
  return rng.uniform(lo + bins.min() * width, lo + (bins.max() + 1) * width)
