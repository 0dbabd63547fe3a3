"""GenDS as GenDeg's script makes it: the synthesis plan (uniform draws per type, clean pools,
source weights, mixed prompts), clean images resized whole, GenDeg's histogram files, histograms
fitted on real pairs."""

import numpy as np
import pytest
import scipy.stats
from PIL import Image

from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.synth import run as synth_run
from jaxdeg.synth import synthesize
from jaxdeg.synth.fit_pairs import fit_pairs
from jaxdeg.synth.histograms import IntensityHistograms
from jaxdeg.synth.official_histograms import load_official
from jaxdeg.synth.plan import Plan
from tests.synth.official_files import write_official

TYPES = ("haze", "rain", "snow", "motion_blur", "low_light", "raindrop")
N = intensity.NUM_BINS


def _settings(**fields):
  s = synth_run.defaults()
  s.update(fields)
  return s


def _histograms():
  rng = np.random.default_rng(0)
  h = IntensityHistograms()
  for t in TYPES:
    for dataset in ("A", "B"):
      mu = rng.uniform(0.02, 0.2, 200)
      h.add(f"{t}/{dataset}", mu, mu * rng.uniform(0.3, 0.8, 200))
  mu = rng.uniform(0.2, 0.3, 200)
  h.add("rain/ORD", mu, mu / 2)
  return h


def test_every_type_gets_five_percent_uniform_draws_and_the_plan_is_a_function_of_the_seed():
  images = 2000
  plan = Plan(_settings(types=TYPES), _histograms(), [""] * images)
  assert len(plan) == 12_000
  entries = [plan[j] for j in range(len(plan))]
  for t in TYPES:
    mine = [e for e in entries if e["type"] == t]
    share = np.mean([e["uniform"] for e in mine])
    assert len(mine) == images and abs(share - 0.05) <= 0.01, (t, share)
    assert plan.counts()[t] == {"jobs": images, "uniform": sum(e["uniform"] for e in mine)}
  # a type's run: every image once, draws 0, 20, 40, ... uniform (GenDeg's counter)
  haze = [e for e in entries if e["type"] == "haze"]
  assert [e["image"] for e in haze] == list(range(images))
  assert [e["draw"] for e in haze if e["uniform"]] == list(range(0, images, 20))
  # the same seed gives the same plan, entry by entry, whatever order it is asked in
  again = Plan(_settings(types=TYPES), _histograms(), [""] * images)
  assert [again[j] for j in (11_999, 3, 7_000)] == [entries[j] for j in (11_999, 3, 7_000)]
  assert Plan(_settings(types=TYPES, seed=1), _histograms(), [""] * images)[5]["mu"] != entries[5]["mu"]


def test_source_weights_and_mixed_prompts_follow_gendeg():
  plan = Plan(_settings(types=("rain",)), _histograms(), [""] * 6000)
  entries = [plan[j] for j in range(len(plan))]
  ord_share = np.mean([e["source"] == "rain/ORD" for e in entries])
  assert abs(ord_share - 0.2 / 2.2) < 0.015, ord_share  # ORD at 0.2 of the weight of A and B
  assert all(e["condition"] == ("rain+haze" if e["source"] == "rain/ORD" else "rain") for e in entries)
  with pytest.raises(ConfigError, match=r"source_weights for 'rain'"):
    Plan(_settings(types=("rain",), source_weights={"rain/A": 0, "rain/B": 0, "rain/ORD": 0}), _histograms(), [""])


def test_clean_pool_leaves_out_each_images_own_type():
  own = ["haze", "haze", "rain", "snow", ""]
  plan = Plan(_settings(types=("haze", "rain", "snow")), _histograms(), own)
  entries = [plan[j] for j in range(len(plan))]
  for e in entries:
    assert own[e["image"]] != e["type"]
  assert [e["image"] for e in entries if e["type"] == "haze"] == [2, 3, 4]
  assert len(entries) == 3 + 4 + 4
  everything = Plan(_settings(types=("haze", "rain", "snow"), augment_only=False), _histograms(), own)
  assert len(everything) == 15


def test_clean_images_are_resized_whole_not_skipped_and_know_their_source_type(tmp_path):
  rng = np.random.default_rng(0)
  small = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)  # 300 wide, 200 high: under 512
  (tmp_path / "clean").mkdir()
  (tmp_path / "degraded").mkdir()
  big = rng.integers(0, 256, (600, 600, 3), dtype=np.uint8)
  for name, image in (("a.png", small), ("b.png", big)):
    Image.fromarray(image).save(tmp_path / "clean" / name)
    Image.fromarray(255 - image).save(tmp_path / "degraded" / name)
  s = _settings(clean_sources=({"kind": "paired", "path": str(tmp_path), "type": "haze"},
                               {"kind": "samples", "photos": ("coffee",)}))
  data, types = synthesize.clean_images(s)
  assert types == ["haze", "haze", ""] and len(data) == 3
  image = data[0]["clean"]
  want = np.asarray(Image.fromarray(small).resize((512, 512), Image.Resampling.LANCZOS), np.float32) / 255
  assert image.shape == (512, 512, 3)
  np.testing.assert_allclose(image, want, atol=1e-6)
  cropped, _ = synthesize.clean_images(_settings(clean_sources=s.clean_sources, clean_fit="crop"))
  assert len(cropped) == 2  # the earlier behaviour: the 300×200 image is too small and skipped


def test_official_histogram_files_draw_their_distribution(tmp_path):
  rng = np.random.default_rng(0)
  joint = np.zeros((N, N), np.int64)
  for i in range(3, 30):  # μ bins 3..29; σ rows that move with μ
    joint[i, i // 2: i // 2 + 6] = rng.integers(1, 50, 6)
  mu_counts = joint.sum(1) + rng.integers(0, 5, N) * (joint.sum(1) > 0)  # counted apart, as GenDeg's are
  write_official(tmp_path, "haze", "FogSet", mu_counts, joint)
  write_official(tmp_path, "motion blur", "BlurSet", mu_counts, joint, name_sep="")
  (tmp_path / "rain").mkdir()
  (tmp_path / "rain" / "notes.txt").write_text("not a histogram")
  h = load_official(str(tmp_path))
  assert h.sources == ["haze/FogSet", "motion_blur/BlurSet"]
  draw_rng = np.random.default_rng(0)
  draws = np.array([h.sample("haze/FogSet", draw_rng) for _ in range(10_000)])
  mu_bins = np.asarray(intensity.mu_bin(draws[:, 0]))
  observed = np.bincount(mu_bins, minlength=N)
  used = mu_counts > 0
  expected = mu_counts[used] / mu_counts.sum() * len(draws)
  p_mu = scipy.stats.chisquare(observed[used], expected).pvalue
  assert observed[~used].sum() == 0 and p_mu > 1e-3, p_mu
  # σ given a μ bin follows that bin's row of the Mu-Sigma file
  row = 20
  sigma_bins = np.asarray(intensity.sigma_bin(draws[mu_bins == row, 1]))
  counts = joint[row]
  observed = np.bincount(sigma_bins, minlength=N)
  p_sigma = scipy.stats.chisquare(observed[counts > 0], counts[counts > 0] / counts.sum() * len(sigma_bins)).pvalue
  assert observed[counts == 0].sum() == 0 and p_sigma > 1e-3, p_sigma
  # the uniform draws span the μ file's non-empty bins
  uniform = np.array([h.sample("haze/FogSet", draw_rng, uniform=True)[0] for _ in range(500)])
  lo, hi = np.asarray(intensity.bin_bounds(np.array([3, 29]), intensity.MU_RANGE))
  assert uniform.min() >= lo[0] and uniform.max() <= hi[1] and uniform.max() - uniform.min() > 0.9 * (hi[1] - lo[0])
  # a missing file is a clear error
  (tmp_path / "haze" / "Sigma_FogSet.json").unlink()
  with pytest.raises(ConfigError, match="haze/FogSet has no Sigma_ file"):
    load_official(str(tmp_path))


def test_histograms_fitted_on_real_pairs_count_gendegs_statistics(tmp_path):
  from jaxdeg.data.resize import lanczos_square, pair_stats
  rng = np.random.default_rng(0)
  want = []
  for k in range(3):
    clean = rng.integers(0, 200, (120 + 40 * k, 90, 3), dtype=np.uint8)
    degraded = np.clip(clean.astype(int) + 15 * (k + 1), 0, 255).astype(np.uint8)
    for folder, image in (("clean", clean), ("degraded", degraded)):
      (tmp_path / folder).mkdir(exist_ok=True)
      Image.fromarray(image).save(tmp_path / folder / f"{k}.png")
    want.append(pair_stats(lanczos_square(clean, 256), lanczos_square(degraded, 256)))
  h = fit_pairs(({"kind": "paired", "path": str(tmp_path), "type": "haze", "label": "mine"},), 256, log=lambda *a: None)
  assert h.sources == ["haze/mine"] and h.total("haze/mine") == 3
  mu_bins, sigma_bins = np.nonzero(h.counts["haze/mine"])
  assert sorted(mu_bins.tolist()) == sorted(int(intensity.mu_bin(m)) for m, _ in want)
  assert sorted(sigma_bins.tolist()) == sorted(int(intensity.sigma_bin(s)) for _, s in want)
  with pytest.raises(ConfigError, match="fit_sources\\[0\\]: holds no degraded images"):
    fit_pairs(({"kind": "samples", "photos": ("coffee",)},))
