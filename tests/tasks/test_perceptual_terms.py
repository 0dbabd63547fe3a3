"""The perceptual terms wired into the tasks, from random weight files: the cdd generator loss
(DISTS and LPIPS), the VAE loss (LPIPS, as SD adds it) and the restore evaluation (LPIPS per
example, so per type and test set too)."""
import jax
import numpy as np
import pytest

from jaxdeg.train import evaluation, trainer, writers
from tests.models.perceptual.files import write_random_weights
from tests.utils import load_config

ONE_DEVICE = dict(mesh__num_devices=1, mesh__data=-1, mesh__fsdp=1)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  return write_random_weights(str(tmp_path_factory.mktemp("perceptual_weights")))[0]


def one_train_step(config):
  """(metrics of one training step, the task) through the trainer's jitted functions."""
  setup = trainer.Setup(config)
  state = setup.init(setup.rng)
  batch = next(setup.task.data_iterator())
  _, metrics = setup.train_step(state, setup.global_batch(batch))
  return {k: float(v) for k, v in jax.device_get(metrics).items()}, setup.task


def test_cdd_generator_loss_adds_weighted_dists_and_lpips(paths):
  # without IDA and IDEN the step compiles in half the time; the perceptual terms do not depend on them
  config = load_config("configs/cdd_general.py:tiny", **ONE_DEVICE, model__use_ida=False, model__use_iden=False,
                       loss__vgg16_weights=paths["vgg16"], loss__dists_weights=paths["dists"],
                       loss__lpips_weights=paths["lpips"], loss__dists_weight=10.0, loss__lpips_weight=2.0)
  metrics, task = one_train_step(config)
  assert set(task.perceptual) == {"dists", "lpips"}
  print({k: round(metrics[k], 4) for k in ("loss", "dists", "lpips")})
  assert 0 < metrics["dists"] < 1 and metrics["lpips"] > 0
  w = config.loss
  weights = {"l1": w.l1_weight, "colour": w.colour_weight, "diversity": w.diversity_weight,
             "contrastive": w.contrastive_weight, "rate_global": w.rate_global_weight,
             "rate_local": w.rate_local_weight, "aux": w.aux_weight, "gan": w.gan_weight,
             "dists": 10.0, "lpips": 2.0}
  assert np.isclose(metrics["loss"], sum(weights[k] * metrics[k] for k in weights), rtol=1e-5)
  assert np.isfinite(metrics["grad_norm"])


def test_vae_loss_adds_lpips_on_every_pixel(paths):
  config = load_config("configs/gendeg_vae.py:tiny", **ONE_DEVICE, loss__vgg16_weights=paths["vgg16"],
                       loss__lpips_weights=paths["lpips"], loss__lpips_weight=0.5)
  metrics, _ = one_train_step(config)
  print({k: round(metrics[k], 4) for k in ("loss", "l1", "kl", "lpips")})
  assert metrics["lpips"] > 0
  pixels = config.data.crop ** 2 * 3
  expected = (metrics["l1"] + 0.5 * metrics["lpips"]) * pixels + config.loss.kl_weight * metrics["kl"]
  assert np.isclose(metrics["loss"], expected, rtol=1e-5)
  assert np.isfinite(metrics["grad_norm"])


@pytest.fixture(scope="module")
def inception_path(tmp_path_factory):
  import torch
  from benchmarks.peers import torch_inception
  path = str(tmp_path_factory.mktemp("fid_weights") / "pt_inception.pth")
  torch.save(torch_inception.random_fid_inception_state(0), path)
  return path


def test_restore_evaluation_reports_lpips_and_fid_per_type(paths, inception_path, tmp_path):
  config = load_config("configs/aio_3task.py:tiny", **ONE_DEVICE, eval__vgg16_weights=paths["vgg16"],
                       eval__lpips_weights=paths["lpips"], eval__inception_weights=inception_path)
  setup = trainer.Setup(config)
  # the trainer's evaluation of an untrained restorer: no training step to compile
  results, _ = evaluation.evaluate_state(setup, setup.init(setup.rng), writers.create_writer(str(tmp_path)), 0)
  assert set(results["by_type"]) == {"haze", "rain", "gaussian_noise"}
  for metric in ("lpips_input", "lpips_output"):
    assert np.isfinite(results[metric]) and results[metric] > 0, results
    groups = results["by_type"].values()
    weighted = sum(g[metric] * g["num_examples"] for g in groups) / results["num_examples"]
    assert abs(weighted - results[metric]) < 1e-5
  # the degradations differ, so does their input LPIPS
  assert len({round(g["lpips_input"], 5) for g in results["by_type"].values()}) == 3
  assert "| lpips_input | lpips_output |" in evaluation.metrics_markdown(results)
  # FID of inputs and outputs against the targets, overall and per type (each type has ≥ 2 examples)
  for entry in [results] + list(results["by_type"].values()):
    assert entry["num_examples"] >= 2 and np.isfinite(entry["fid_input"]) and entry["fid_input"] > 0, entry
    assert np.isfinite(entry["fid_output"]) and entry["fid_output"] > 0
  assert "fid_output" in evaluation.metrics_markdown(results)


def test_grouped_fid_equals_fid_of_each_group_s_rows():
  from jaxdeg.metrics.fid import FidAccumulator
  rng = np.random.default_rng(0)
  fids = {}
  batches = []
  for b in range(3):  # batches of 6 with padding rows (mask 0) and two groups
    feats = {"target": rng.normal(size=(6, 4)), "output": rng.normal(1.0, 2.0, size=(6, 4))}
    mask, ids = np.array([1, 1, 1, 1, 1, 0.0]), np.array([0, 1, 0, 1, 0, 1])
    evaluation._add_features(fids, feats, mask, {"type": ids})
    batches.append((feats, mask, ids))
  def direct(select):
    acc = FidAccumulator()
    for feats, mask, ids in batches:
      sel = select(mask, ids)
      acc.add(feats["target"][sel], feats["output"][sel])
    return acc.result()
  assert np.isclose(evaluation._fid_results(fids[()])["fid_output"], direct(lambda m, i: m > 0), rtol=1e-10)
  for g in (0, 1):
    got = evaluation._fid_results(fids[("type", g)])["fid_output"]
    assert np.isclose(got, direct(lambda m, i: (m > 0) & (i == g)), rtol=1e-10)
  # a group with fewer than 2 rows has no covariance: no FID rather than an error
  one = {}
  evaluation._add_features(one, {"target": np.ones((2, 4)), "output": np.ones((2, 4))}, np.array([1.0, 0.0]), {})
  assert evaluation._fid_results(one[()]) == {}


def test_cdd_evaluation_reports_lpips_and_dists_per_method(paths):
  from jaxdeg import cdd_eval
  from jaxdeg.tasks.cdd import METHODS
  config = load_config("configs/cdd_general.py:tiny", **ONE_DEVICE, model__use_ida=False, model__use_iden=False,
                       eval__vgg16_weights=paths["vgg16"], eval__lpips_weights=paths["lpips"],
                       eval__dists_weights=paths["dists"])
  setup = trainer.Setup(config)
  task = setup.task
  batch = next(iter(task.eval_data()))
  out = jax.device_get(jax.jit(task.eval_step)(setup.init(setup.rng), batch))
  metrics = out["metrics"]
  # the clean baseline's distance, recomputed directly from the images the step compared
  x, y = out["images"]["content"], out["images"]["truth"]
  for name, distance in task.eval_perceptual.items():
    np.testing.assert_allclose(metrics[f"clean_{name}"], np.asarray(distance(x, y)), rtol=1e-4, atol=1e-6)
    for method in METHODS:
      assert metrics[f"{method}_{name}"].shape == (x.shape[0],) and np.isfinite(metrics[f"{method}_{name}"]).all()
  assert (metrics["transfer_lpips"] != metrics["clean_lpips"]).any()
  means = {k: float(np.mean(v)) for k, v in metrics.items()}
  assert "| LPIPS ↓ | DISTS ↓ |" in cdd_eval.table(means)
  assert "LPIPS" not in cdd_eval.table({k: v for k, v in means.items() if not k.endswith(("lpips", "dists"))})
