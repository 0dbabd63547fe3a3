"""Full-resolution evaluation of a restorer (`config.eval.full_resolution`): every eval image at its
own size, tile by tile, with the same metrics, groups and outputs as the batched crops."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxdeg import tasks
from jaxdeg.data import images as image_io
from jaxdeg.data import samples
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr, ssim
from jaxdeg.tasks.restore import RestoreTask
from jaxdeg.tasks import runs
from jaxdeg.train import trainer
from tests.utils import load_config

TINY = "configs/restore_procedural.py:tiny"
# test_trainer's one-device run: its compiled train step is shared through the compilation cache
RUN = dict(steps=5, mesh__num_devices=1, train__eval_every=0, train__checkpoint_every=100)
METRICS = ("psnr_input", "psnr_output", "ssim_input", "ssim_output")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full_res_run")
  trainer.train_and_evaluate(load_config(TINY, **RUN), workdir)
  _, task, state, _ = runs.load_run(str(workdir))
  apply = jax.jit(lambda x: task.model.apply({"params": state.inference_params()}, x))
  return workdir, task, apply


@jax.jit
def metrics(degraded, restored, clean):
  restored = jnp.clip(restored, 0.0, 1.0)
  return {"psnr_input": psnr(degraded, clean), "psnr_output": psnr(restored, clean),
          "ssim_input": ssim(degraded, clean), "ssim_output": ssim(restored, clean)}


def reference(apply, degraded, clean):
  """eval_step's metrics from one whole-image call, no tiles."""
  return metrics(degraded[None], apply(degraded[None]), clean[None])


def evaluate_recording(config, workdir, monkeypatch):
  """trainer.evaluate's results, the per-image metrics the task produced on the way, and the task."""
  real, seen, used = RestoreTask.eval_full_resolution, [], []

  def recording(self, state):
    used.append(self)
    for out in real(self, state):
      seen.append({k: float(v[0]) for k, v in jax.device_get(out["metrics"]).items()})
      yield out
  monkeypatch.setattr(RestoreTask, "eval_full_resolution", recording)
  return trainer.evaluate(config, workdir), seen, used[0]


def assert_close(got, want, atol=1e-4):
  for k in METRICS:
    assert abs(got[k] - float(np.asarray(want[k]).reshape(()))) <= atol, (k, got[k], want[k])


def test_procedural_photos_at_full_size_match_whole_image_inference(run, monkeypatch):
  workdir, task, apply = run
  # one photo of 300x451 (not a multiple of the tile) twice: two indices, two degradations
  config = load_config(TINY, data__eval_photos=("chelsea", "chelsea"), eval__full_resolution=True,
                       eval__tile=64, eval__tile_overlap=32)
  results, seen, _ = evaluate_recording(config, workdir, monkeypatch)
  assert results["num_examples"] == len(seen) == 2
  clean = image_io.to_float(samples.load("chelsea"))
  degrade = jax.jit(task.degrade_batch)
  for index, got in enumerate(seen):
    # eval_step's degradation for this example's index, drawn at the photo's own size
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), index)
    assert_close(got, reference(apply, np.asarray(degrade(key[None], clean[None])[0]), clean))
  assert abs(seen[0]["psnr_input"] - seen[1]["psnr_input"]) > 1e-3
  for k in METRICS:
    assert abs(results[k] - np.mean([s[k] for s in seen])) < 1e-5
  # the grid: input | output | target of both, at 1:1
  grid = np.asarray(Image.open(workdir / config.eval.grid_name))
  assert grid.shape == (2 * (300 + 2) + 2, 3 * (451 + 2) + 2, 3)


def write_pairs(root, sizes, degraded_dir, clean_dir):
  photo = samples.load("astronaut")
  rng = np.random.default_rng(len(sizes))
  for i, (h, w) in enumerate(sizes):
    clean = photo[40 * i:40 * i + h, 30 * i:30 * i + w]
    degraded = np.clip(clean * 0.6 + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    for folder, image in ((degraded_dir, degraded), (clean_dir, clean)):
      (root / folder).mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(root / folder / f"im{i}.png")
  return [(image_io.read_image(str(root / degraded_dir / f"im{i}.png")),
           image_io.read_image(str(root / clean_dir / f"im{i}.png"))) for i in range(len(sizes))]


def test_paired_sources_at_full_size_grouped_per_type_and_test_set(run, monkeypatch, tmp_path):
  workdir, _, apply = run
  # two sizes, neither a multiple of the tile (the tile of the test above: compiled once)
  pairs = write_pairs(tmp_path / "a", [(70, 90), (70, 90)], "degraded", "clean")
  pairs += write_pairs(tmp_path / "b", [(66, 83)], "low", "high")
  sources = (dict(kind="paired", path=str(tmp_path / "a"), type="haze", label="set A"),
             dict(kind="paired", path=str(tmp_path / "b"), layout="lol", label="set B"))
  config = load_config(TINY, data__sources=sources, data__eval_sources=sources, eval__full_resolution=True,
                       eval__tile=64, eval__tile_overlap=32)
  results, seen, task = evaluate_recording(config, workdir, monkeypatch)
  assert len(seen) == 3
  assert task._full_resolution_functions["apply"]._cache_size() == 1  # one tile shape for both image sizes
  want = [reference(apply, degraded, clean) for degraded, clean in pairs]
  for got, expected in zip(seen, want):
    assert_close(got, expected)
  mean = lambda items: {k: np.mean([float(np.asarray(x[k]).reshape(())) for x in items]) for k in METRICS}
  assert results["num_examples"] == 3
  assert_close(results, mean(want))
  for field, names in (("by_type", ("haze", "low_light")), ("by_test_set", ("set A", "set B"))):
    assert list(results[field]) == list(names)
    assert [g["num_examples"] for g in results[field].values()] == [2, 1]
    assert_close(results[field][names[0]], mean(want[:2]))
    assert_close(results[field][names[1]], mean(want[2:]))
  saved = json.loads((workdir / "metrics.json").read_text())
  assert saved["by_test_set"]["set B"]["num_examples"] == 1 and saved["step"] == 5
  table = (workdir / "metrics.md").read_text()
  assert "| group | psnr_input | psnr_output | ssim_input | ssim_output | examples |" in table
  assert "| test_set: set A |" in table and "| type: low_light |" in table


@pytest.mark.parametrize("fields, key", [
    (dict(eval__tile=32, eval__tile_overlap=32), "config.eval.tile_overlap=32"),
    (dict(eval__tile=16, eval__tile_overlap=24), "config.eval.tile_overlap=24"),
    (dict(eval__tile=0), "config.eval.tile=0"),
    (dict(eval__tile=-64), "config.eval.tile=-64"),
    (dict(eval__tile=33), "config.eval.tile=33"),
    (dict(eval__tile_overlap=-1), "config.eval.tile_overlap=-1"),
    (dict(eval__tile_batch=0), "config.eval.tile_batch=0"),
])
def test_bad_tile_settings_name_the_field(fields, key):
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
    tasks.get(load_config(TINY, eval__full_resolution=True, **fields))
  tasks.get(load_config(TINY, **fields))  # only checked when evaluating at full resolution


def test_tasks_without_full_resolution_evaluation_say_so():
  # refused when the run is set up, before any training
  with pytest.raises(ConfigError, match=r"config\.eval\.full_resolution=True: the vae task evaluates crops only"):
    trainer.Setup(load_config("configs/gendeg_vae.py:tiny", eval__full_resolution=True))
  vae = tasks.get(load_config("configs/gendeg_vae.py:tiny"))
  assert RestoreTask.full_resolution_eval and not vae.full_resolution_eval
  with pytest.raises(ConfigError, match="the vae task evaluates crops only"):
    next(iter(vae.eval_full_resolution(None)))


def test_latent_cache_mode_needs_a_task_that_has_one(tmp_path):
  from jaxdeg import main
  with pytest.raises(ConfigError, match="--mode=cache_latents: task 'restore' has no latent cache"):
    main.run(load_config(TINY), str(tmp_path), mode="cache_latents")
