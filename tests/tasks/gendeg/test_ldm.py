"""GenDeg's latent diffusion task: tiny training on a tiny VAE run, the 10× learning-rate group,
condition dropout, sharded-step equivalence, and the jitted sampler."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import tasks
from jaxdeg.data import samples
from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.tasks import ldm
from jaxdeg.tasks import runs
from jaxdeg.train import partitioning, trainer
from tests.tasks.gendeg.conftest import SHARDED, first_last, last_eval, ldm_config
from tests.utils import max_abs_diff


def test_tiny_ldm_training_lowers_loss(ldm_run):
  workdir, losses = ldm_run
  assert sorted(losses) == list(range(1, 31))
  first, last = first_last(losses)
  assert last < 0.7 * first, (first, last)
  results = last_eval(workdir)
  assert results["num_examples"] == 2
  assert math.isfinite(results["denoise_mse"]) and math.isfinite(results["mu_error"]), results
  assert list((workdir / "images").glob("eval_grid_*.png"))


def _paths(tree, value):
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path) for path, v in flat if v == value}


def test_new_projection_layers_get_10x_updates(vae_run):
  config = ldm_config(vae_run[0])
  task = tasks.get(config)
  params = partitioning.unbox(jax.eval_shape(task.init_state, jax.random.PRNGKey(0))).params
  assert _paths(ldm.new_layer_labels(params), "new_layers") == {
      "context/stats_proj/kernel", "context/stats_proj/bias",
      "context/cc_projection/kernel", "context/cc_projection/bias"}
  assert "context/type_tokens" in _paths(ldm.new_layer_labels(params), "base")
  # Adam's first step moves every parameter by about lr·g/|g| (the same for every element: the
  # gradients are all ones; zero params: no weight decay); the new layers by exactly 10× as much.
  # A few leaves of each group stand for the whole tree.
  picked = {"unet": {"conv_in": params["unet"]["conv_in"]}, "context": params["context"]}
  zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), picked)
  updates, _ = jax.jit(task.tx.update)(jax.tree.map(jnp.ones_like, zeros), task.tx.init(zeros), zeros)
  lr = config.optimizer.learning_rate
  step = float(updates["unet"]["conv_in"]["bias"][0])
  assert -1.01 * lr < step < -0.99 * lr
  labels = jax.tree.leaves(ldm.new_layer_labels(zeros))
  for (path, u), label in zip(jax.tree_util.tree_flatten_with_path(updates)[0], labels):
    scale = 10.0 if label == "new_layers" else 1.0
    np.testing.assert_allclose(np.asarray(u), scale * step, rtol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_condition_dropout_follows_gendeg_table(vae_run):
  task = tasks.get(ldm_config(vae_run[0]))
  n = 40_000
  mu, sigma = jnp.full((n,), 0.1), jnp.full((n,), 0.05)
  stats, type_ids, image_lat = jax.jit(task.condition_dropout)(
      jax.random.PRNGKey(3), mu, sigma, jnp.zeros((n,), jnp.int32), jnp.ones((n, 1, 1, 1)))
  no_text = np.asarray(type_ids) == len(task.context.types)
  no_stats = np.asarray(stats[:, :, intensity.NULL_INDEX]).all(axis=1)
  no_image = np.asarray(image_lat).reshape(n) == 0.0
  np.testing.assert_array_equal(no_text, no_stats)
  fractions = {"text+stats": np.mean(no_text & ~no_image), "text+stats+image": np.mean(no_text & no_image),
               "image": np.mean(~no_text & no_image), "none": np.mean(~no_text & ~no_image)}
  expected = {"text+stats": 0.05, "text+stats+image": 0.05, "image": 0.05, "none": 0.85}
  for k, p in expected.items():
    assert abs(fractions[k] - p) < 4 * math.sqrt(p * (1 - p) / n), (k, fractions[k], p)


def test_sharded_step_equals_single_device_step(vae_run):
  one = trainer.Setup(ldm_config(vae_run[0]))
  eight = trainer.Setup(ldm_config(vae_run[0], **SHARDED))
  state1 = one.init(one.rng)
  state8 = jax.device_put(jax.device_get(state1), eight.shardings)
  kernel = state8.params["unet"]["conv_in"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert kernel.addressable_shards[0].data.shape[-1] == kernel.shape[-1] // 2
  batch = next(iter(one.task.train_data()))
  new1, metrics1 = one.train_step(state1, one.global_batch(batch))
  new8, metrics8 = eight.train_step(state8, eight.global_batch(batch))
  assert abs(float(metrics1["loss"]) - float(metrics8["loss"])) <= 1e-5
  assert max_abs_diff(new1.params, new8.params) <= 1e-5
  assert max_abs_diff(new1.opt_state, new8.opt_state) <= 1e-5
  assert max_abs_diff(new1.ema_params, new8.ema_params) <= 1e-5


def test_sampler_returns_finite_images_deterministic_per_key(vae_run, ldm_run):
  config = ldm_config(vae_run[0])
  _, _, state, _ = runs.load_run(str(ldm_run[0]))
  params, vae_params = state.inference_params(), state.model_state["vae"]
  sampler = ldm.make_sampler(config, steps=3)
  clean = np.stack([samples.load(n)[:32, :32] for n in ("astronaut", "coffee")]).astype(np.float32) / 255.0
  args = (params, vae_params, clean, np.array([0, 4], np.int32), np.array([10, 30], np.int32),
          np.array([5, intensity.NULL_INDEX], np.int32))
  keys = lambda *seeds: jnp.stack([jax.random.PRNGKey(s) for s in seeds])
  a = np.asarray(sampler(*args, keys(0, 1)))
  b = np.asarray(sampler(*args, keys(0, 1)))
  c = np.asarray(sampler(*args, keys(0, 2)))
  assert a.shape == (2, 32, 32, 3) and np.isfinite(a).all()
  assert a.min() >= 0.0 and a.max() <= 1.0
  np.testing.assert_array_equal(a, b)
  # one key per example: changing the second key leaves the first sample as it was
  np.testing.assert_allclose(a[0], c[0], atol=1e-6)
  assert np.abs(a[1] - c[1]).max() > 1e-3


def test_vae_from_a_diffusers_folder(tmp_path, vae_run):
  from tests.models.ldm.torch_ref import torch_vae
  torch_vae().save_pretrained(str(tmp_path / "vae"))
  config = ldm_config(vae_run[0], vae__workdir=None, vae__diffusers_path=str(tmp_path))
  task = tasks.get(config)
  assert task.vae.block_out_channels == (16, 32)
  params = task._load_vae()
  assert jax.tree.map(np.shape, params) == jax.tree.map(lambda a: a.shape, partitioning.unbox(task.vae_shapes))
  with pytest.raises(ConfigError, match="set exactly one of vae.workdir"):
    tasks.get(ldm_config(vae_run[0], vae__diffusers_path=str(tmp_path)))
  with pytest.raises(ConfigError, match=r"config\.vae\.diffusers_path=.*no config\.json"):
    tasks.get(ldm_config(vae_run[0], vae__workdir=None, vae__diffusers_path=str(tmp_path / "empty")))
