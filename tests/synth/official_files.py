"""GenDeg's intensity-histogram files, written by the tests from counts (the official repository has
no licence: none of its files are copied)."""
import json

import numpy as np

from jaxdeg.degrade import intensity

N = intensity.NUM_BINS


def write_official(root, type_folder, dataset, mu_counts, joint, name_sep="_"):
  """Histogram files in GenDeg's layout, written here from the counts: μ and σ bin lists, and the σ
  rows of the μ bins keyed by their '%.3f - %.3f' range, in shuffled order."""
  folder = root / type_folder
  folder.mkdir(parents=True, exist_ok=True)
  mu_edges = np.linspace(*intensity.MU_RANGE, N + 1)
  sigma_edges = np.linspace(*intensity.SIGMA_RANGE, N + 1)
  mu_file = [{"Mu min": float(mu_edges[i]), "Mu max": float(mu_edges[i + 1]), "Count": int(mu_counts[i]),
              "Dataset": dataset} for i in range(N)]
  sigma_file = [{"Sigma min": float(sigma_edges[j]), "Sigma max": float(sigma_edges[j + 1]),
                 "Count": int(joint[:, j].sum()), "Dataset": dataset} for j in range(N)]
  rows = [{"Mu range": f"{mu_edges[i]:.3f} - {mu_edges[i + 1]:.3f}", "Dataset": dataset,
           "Count": [{"Sigma min": float(sigma_edges[j]), "Sigma max": float(sigma_edges[j + 1]),
                      "Count": int(joint[i, j])} for j in range(N)]} for i in range(N)]
  np.random.default_rng(1).shuffle(rows)
  (folder / f"Mu_{dataset}.json").write_text(json.dumps(mu_file))
  (folder / f"Sigma_{dataset}.json").write_text(json.dumps(sigma_file))
  (folder / f"Mu-Sigma-{name_sep}{dataset}.json").write_text(json.dumps(rows))
