"""The ldm task's latent cache: `--mode=cache_latents` writes and resumes, a step from cached
latents is the step from images, training reads the cache, and mismatched caches are refused."""
import jax
import numpy as np
import pytest

from jaxdeg import main as jaxdeg_main
from jaxdeg.errors import ConfigError
from jaxdeg.tasks import _ldm_latent_cache as cache
from jaxdeg.train import trainer
from tests.tasks.gendeg.conftest import ldm_config
from tests.utils import max_abs_diff


@pytest.fixture(scope="module")
def written(tmp_path_factory, vae_run):
  folder = tmp_path_factory.mktemp("cache") / "latents"
  config = ldm_config(vae_run[0], data__latent_cache=str(folder), data__latent_cache_batches=2)
  first = jaxdeg_main.run(config, str(folder.parent / "run"), mode="cache_latents")
  return config, folder, first


def test_cache_holds_the_batches_and_resumes_without_rewriting(written, vae_run):
  config, folder, first = written
  assert first == {"batches": 2, "records": 16, "already_done": 0}
  again = jaxdeg_main.run(ldm_config(vae_run[0], data__latent_cache=str(folder), data__latent_cache_batches=3),
                          str(folder.parent / "run"), mode="cache_latents")
  assert again == {"batches": 3, "records": 24, "already_done": 2}
  # the tiny VAE downsamples 32² crops to 16² latents
  source = cache.check_cache(str(folder), (16, 16, 4), tuple(config.context.types))
  entries = [cache.DecodeLatents().map(source[i]) for i in range(len(source))]
  assert len(entries) == 24 and entries[0]["clean_latent"].shape == (16, 16, 4)
  assert all(0 <= e["mu"] <= 1 and e["type"] in (0, 4) for e in entries)  # haze, low_light ids


def test_a_step_from_cached_latents_is_the_step_from_images(vae_run):
  setup = trainer.Setup(ldm_config(vae_run[0]))
  task, state = setup.task, setup.init(setup.rng)
  batch = next(iter(task.train_data()))
  # the cache entry of this batch made with the key the step uses for its pairs
  k_pair = jax.random.split(state.step_rng(), 5)[0]
  entry = jax.jit(task.cache_entries)(state.model_state["vae"], k_pair, batch)
  cached = {k: entry[k] for k in ("clean_latent", "degraded_mean", "degraded_logvar", "mu", "sigma", "type")}
  from_images, m1 = jax.jit(task.train_step)(state, batch)
  from_cache, m2 = jax.jit(task.train_step)(state, cached)
  assert abs(float(m1["loss"]) - float(m2["loss"])) <= 1e-6 * abs(float(m1["loss"]))
  assert max_abs_diff(from_images.params, from_cache.params) <= 1e-6
  assert max_abs_diff(from_images.params, state.params) > 1e-5  # the step did move the parameters


def test_training_reads_the_cache_and_refuses_a_mismatched_one(written, vae_run, tmp_path):
  config, folder, _ = written
  batch = next(iter(trainer.Setup(config).task.train_data()))
  assert set(batch) == {"clean_latent", "degraded_mean", "degraded_logvar", "mu", "sigma", "type"}
  assert batch["clean_latent"].shape == (8, 16, 16, 4) and batch["type"].dtype == np.int32
  with pytest.raises(ConfigError, match=r"latents of shape \(16, 16, 4\).*\(32, 32, 4\)"):
    trainer.Setup(ldm_config(vae_run[0], data__latent_cache=str(folder), data__crop=64)).task.train_data()
  with pytest.raises(ConfigError, match="type ids were written for"):
    trainer.Setup(ldm_config(vae_run[0], data__latent_cache=str(folder),
                             pairs__types=("haze",), context__types=("haze", "rain"))).task.train_data()
  with pytest.raises(ConfigError, match="latent_cache=.*nowhere"):
    trainer.Setup(ldm_config(vae_run[0], data__latent_cache=str(tmp_path / "nowhere"))).task.train_data()
  with pytest.raises(ConfigError, match="set config.data.latent_cache"):
    jaxdeg_main.run(ldm_config(vae_run[0]), str(tmp_path / "run"), mode="cache_latents")
