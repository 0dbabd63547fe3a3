"""Synthesis: intensity histograms, the procedural generator's calibration, shards, resumption."""
import json
import os

import numpy as np
import pytest
import scipy.stats

from jaxdeg.data import records
from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.synth import run as synth_run
from jaxdeg.synth import synthesize
from jaxdeg.synth.histograms import IntensityHistograms
from jaxdeg.synth.plan import Plan
from tests.utils import load_config

TINY = "configs/gendeg_synthesize.py:tiny"


def _hist():
  rng = np.random.default_rng(0)
  h = IntensityHistograms()
  mu = rng.uniform(0.05, 0.15, 500)
  h.add("haze", mu, mu * 0.5)
  return h


def test_histogram_draws_follow_the_fitted_ranges_and_are_deterministic(tmp_path):
  h = _hist()
  rng = lambda job, seed=3: np.random.default_rng([seed, job])
  draws = [h.sample("haze", rng(j), uniform=j % 20 == 0) for j in range(400)]
  mus = np.array([d[0] for d in draws])
  width = (intensity.MU_RANGE[1] - intensity.MU_RANGE[0]) / intensity.NUM_BINS
  assert mus.min() >= 0.05 - width and mus.max() <= 0.15 + width
  # σ conditioned on the μ bin: σ ≈ μ/2 in the data, so the draws follow it within a bin or two
  regular = np.array([d for j, d in enumerate(draws) if j % 20 != 0])
  assert np.abs(regular[:, 1] - regular[:, 0] / 2).max() < 3 * width
  assert h.sample("haze", rng(17)) == h.sample("haze", rng(17)) != h.sample("haze", rng(17, seed=4))
  h.save(tmp_path / "h.json")
  assert IntensityHistograms.load(tmp_path / "h.json").sample("haze", rng(17)) == h.sample("haze", rng(17))
  with pytest.raises(ConfigError, match="no intensity statistics for 'rain'"):
    h.sample("rain", rng(0))
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(ConfigError, match="bad.json: unreadable"):
    IntensityHistograms.load(tmp_path / "bad.json")


def _records(workdir):
  out = []
  for name in sorted(os.listdir(workdir)):
    if name.endswith(".array_record"):
      from array_record.python import array_record_module
      reader = array_record_module.ArrayRecordReader(os.path.join(workdir, name))
      out += [records.unpack(r) for r in reader.read_all()]
      reader.close()
  return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("syn"))
  summary = synth_run.run(load_config(TINY), workdir)
  return workdir, summary, _records(workdir)


def test_synthesis_writes_readable_shards_with_metadata(uninterrupted):
  workdir, summary, recs = uninterrupted
  assert summary["jobs"] == 4 * 3 and summary["kept"] + summary["dropped"] == 12
  assert summary["kept"] == len(recs) >= 6
  assert json.load(open(os.path.join(workdir, "synthesis_summary-p00000.json")))["kept"] == summary["kept"]
  s = load_config(TINY).synth
  for r in recs:
    assert r["clean"].shape == r["degraded"].shape == (64, 64, 3) and r["degraded"].dtype == np.uint8
    m = r["meta"]
    assert m["type"] in ("haze", "low_light", "motion_blur") and m["generator"] == "procedural"
    assert abs(m["mu_achieved"] - m["mu"]) <= s.tolerance_abs + s.tolerance_rel * m["mu"]
    assert not np.array_equal(r["clean"], r["degraded"])
  # the calibrated procedural generator reaches the requested μ: rank correlation over all records
  rho = scipy.stats.spearmanr([r["meta"]["mu"] for r in recs], [r["meta"]["mu_achieved"] for r in recs])[0]
  assert rho >= 0.8, rho
  # every record carries its plan entry; the summary counts jobs and uniform draws per type
  s = synth_run.defaults()
  s.update(load_config(TINY).synth)
  plan = Plan(s, IntensityHistograms.load(os.path.join(workdir, synth_run.HISTOGRAMS_FILE)),
              synthesize.clean_images(s)[1])
  for r in recs:
    entry = plan[r["meta"]["job"]]
    assert {k: r["meta"][k] for k in entry} == entry
  assert summary["per_type"]["haze"] == {"jobs": 4, "uniform": 1, "kept": summary["per_type"]["haze"]["kept"],
                                         "dropped": 4 - summary["per_type"]["haze"]["kept"]}
  assert summary["uniform"] == 3


def test_interrupted_synthesis_resumes_without_duplicates(uninterrupted, tmp_path):
  _, _, reference = uninterrupted
  config = load_config(TINY)
  calls = []

  def crash_after_two_batches(line):
    calls.append(line)
    if len(calls) == 2:
      raise KeyboardInterrupt

  s = synth_run.defaults()
  s.update(config.synth)
  hist = synth_run._fit_or_load(s, str(tmp_path))
  generate, type_ids, name = synth_run._generator(s, hist)
  with pytest.raises(KeyboardInterrupt):
    synthesize.run_jobs(s, generate, None, hist, str(tmp_path), generator_name=name, type_ids=type_ids,
                        log=crash_after_two_batches)
  partial = _records(tmp_path)
  assert 0 < len(partial) < len(reference)
  summary = synth_run.run(config, str(tmp_path))
  assert summary["already_done"] > 0
  recs = _records(tmp_path)
  jobs = [r["meta"]["job"] for r in recs]
  assert len(jobs) == len(set(jobs))
  assert jobs == [r["meta"]["job"] for r in reference]
  for a, b in zip(recs, reference):
    np.testing.assert_array_equal(a["degraded"], b["degraded"])


def test_bad_synthesis_config_is_a_clear_error(tmp_path):
  with pytest.raises(ConfigError, match="clean_sources is empty"):
    synth_run.run(load_config("configs/gendeg_synthesize.py"), str(tmp_path))
  with pytest.raises(ConfigError, match=r"unknown field\(s\) \['colour'\]"):
    config = load_config(TINY)
    config.synth.colour = 1
    synth_run.run(config, str(tmp_path))
  with pytest.raises(ConfigError, match="ldm_workdir is empty"):
    synth_run.run(load_config(TINY, synth__generator="ldm"), str(tmp_path / "x"))
