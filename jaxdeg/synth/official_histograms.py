"""Reads GenDeg's official intensity histograms (its repository's `data/` folder, which users copy
themselves: jaxdeg ships none of its files) into `IntensityHistograms`.

Layout: one folder per degradation type (haze, rain, snow, 'motion blur', low-light, raindrop), and
in it per dataset three JSON files, told apart by name as GenDeg's loader does:
  *Mu_*        list of 128 μ bins {'Mu min', 'Mu max', 'Count', 'Dataset'}
  *Sigma_*     list of 128 σ bins {'Sigma min', 'Sigma max', 'Count', 'Dataset'}
  *Mu-Sigma-*  list of 128 rows {'Mu range': '<min> - <max>' (3 decimals), 'Count': [128 σ bins
               {'Sigma min', 'Sigma max', 'Count'}], 'Dataset'}: σ given the μ bin
The dataset is the first entry's 'Dataset'. GenDeg draws μ from the μ file, σ from the row of the
μ bin (looked up by its range string) and the uniform draws' ranges from the μ and σ files; the
files were counted separately (their totals differ), so the μ and σ histograms are kept as read.
Sources are named '<jaxdeg type>/<dataset>', e.g. 'motion_blur/REDS'.
"""
import json
import os

import numpy as np

from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.synth.histograms import IntensityHistograms

N = intensity.NUM_BINS
# GenDeg's folder names -> jaxdeg's type names
TYPE_FOLDERS = {"haze": "haze", "rain": "rain", "snow": "snow", "motion blur": "motion_blur",
                "low-light": "low_light", "raindrop": "raindrop"}
# file-name markers, as GenDeg's load_data filters them (the σ marker is not part of 'Mu-Sigma-_')
KINDS = (("mu", "Mu_"), ("sigma", "Sigma_"), ("joint", "Mu-Sigma-"))


def _read(path):
  try:
    with open(path) as f:
      content = json.load(f)
    dataset = content[0]["Dataset"]
  except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
    raise ConfigError(f"official histogram {path}: unreadable ({type(e).__name__}: {e})") from None
  if len(content) != N:
    raise ConfigError(f"official histogram {path}: {len(content)} bins, expected {N}")
  return str(dataset), content


def _counts(path, bins, name, value_range):
  """(N,) counts of a bin list, after checking its edges are jaxdeg's bins of `value_range`."""
  try:
    lows = np.array([b[f"{name} min"] for b in bins], np.float64)
    counts = np.array([b["Count"] for b in bins], np.int64)
  except (KeyError, TypeError, ValueError) as e:
    raise ConfigError(f"official histogram {path}: bins without {e}") from None
  lo, hi = value_range
  if not np.allclose(lows, lo + np.arange(N) * (hi - lo) / N, atol=1e-6):
    raise ConfigError(f"official histogram {path}: {name} bins are not {N} equal bins on [{lo}, {hi}]")
  return counts


def _range_key(low, high):
  return f"{low:.3f} - {high:.3f}"  # how GenDeg's files name a μ bin


def load_official(root, field="config.synth.histograms") -> IntensityHistograms:
  """IntensityHistograms of every dataset in GenDeg's `data/` folder layout under `root`; `field`
  names where the folder came from, for errors."""
  if not os.path.isdir(root):
    raise ConfigError(f"{field}={root}: no such folder (GenDeg's data/ folder with haze/, rain/, ...)")
  found = {}  # (type, dataset) -> {kind: (path, content)}
  for folder, type_name in TYPE_FOLDERS.items():
    directory = os.path.join(root, folder)
    if not os.path.isdir(directory):
      continue
    for file in sorted(os.listdir(directory)):
      kind = next((k for k, marker in KINDS if marker in file and file.endswith(".json")), None)
      if kind is None:
        continue
      path = os.path.join(directory, file)
      dataset, content = _read(path)
      found.setdefault((type_name, dataset), {}).setdefault(kind, (path, content))
  if not found:
    raise ConfigError(f"{field}={root}: no GenDeg histogram files in its "
                      f"{', '.join(TYPE_FOLDERS)} folders")
  counts, marginals = {}, {}
  for (type_name, dataset), files in sorted(found.items()):
    missing = [marker for kind, marker in KINDS if kind not in files]
    if missing:
      raise ConfigError(f"{field}={root}: {type_name}/{dataset} has no {', '.join(missing)} file")
    mu_path, mu_bins = files["mu"]
    mu = _counts(mu_path, mu_bins, "Mu", intensity.MU_RANGE)
    sigma = _counts(*files["sigma"], "Sigma", intensity.SIGMA_RANGE)
    joint_path, rows = files["joint"]
    by_range = {row.get("Mu range"): row.get("Count") for row in rows}
    joint = np.zeros((N, N), np.int64)
    for i, b in enumerate(mu_bins):
      row = by_range.get(_range_key(b["Mu min"], b["Mu max"]))
      if row is None:
        if mu[i]:
          raise ConfigError(f"official histogram {joint_path}: no row for μ bin {_range_key(b['Mu min'], b['Mu max'])}")
        continue
      joint[i] = _counts(joint_path, row, "Sigma", intensity.SIGMA_RANGE)
    source = f"{type_name}/{dataset}"
    counts[source], marginals[source] = joint, (mu, sigma)
  return IntensityHistograms(counts, marginals=marginals)
