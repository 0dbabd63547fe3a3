"""The `cdd` task: a tiny run learns, a step on 8 devices is the 1-device step, evaluation from the
checkpoint repeats the training-time numbers, the ablations build and step."""
import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxdeg.tasks import cdd
from jaxdeg.tasks import runs
from jaxdeg.train import trainer
from tests.tasks.cdd.shared_run import ONE_DEVICE, TINY, tiny_run
from tests.utils import load_config, max_abs_diff

ABLATIONS = {"compress_global": ("global_compressor",),
             "compress_local": ("local_compressor",),
             "use_iden": ("local_encoder", "local_compressor"),
             "use_ida": ()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def trained(run):
  """(config, task, host copy of the final state, one training batch)."""
  config, task, state, _ = runs.load_run(run[0])
  batch = next(task.data_iterator())
  return config, task, jax.device_get(state), batch


def test_tiny_run_lowers_the_reproduction_l1(run):
  _, records = run
  first, last = records[0], records[-1]
  print(f"train/l1 steps 1-5: {first['train/l1']:.4f}, steps 26-30: {last['train/l1']:.4f}; "
        f"loss {first['train/loss']:.2f} -> {last['train/loss']:.2f}")
  assert last["step"] == 30 and len(records) == 6
  assert last["train/l1"] < 0.8 * first["train/l1"]
  for name in ("colour", "diversity", "contrastive", "rate_global", "rate_local", "aux", "gan", "critic_loss",
               "gradient_penalty", "grad_norm", "critic_grad_norm"):
    assert np.isfinite(last[f"train/{name}"]), name
  assert last["train/rate_global"] > 0 and last["train/rate_local"] > 0


def _step_on(mesh, state, batch):
  setup = trainer.Setup(load_config(TINY, **mesh))
  new_state, metrics = setup.train_step(jax.device_put(state, setup.shardings), setup.global_batch(batch))
  return setup, jax.device_get(new_state), jax.device_get(metrics)


def test_a_step_on_8_devices_equals_the_1_device_step(trained):
  _, _, state, batch = trained
  _, one, one_metrics = _step_on(ONE_DEVICE, state, batch)
  # one mesh with both axes (each compile of this step costs ~30 s on CPU): the batch is split 8 ways
  # over data × fsdp and the parameters 2 ways over fsdp
  setup, many, metrics = _step_on(dict(mesh__data=4, mesh__fsdp=2), state, batch)
  # BatchNorm reduces the global batch, the generator's 'rbg' noise and the replicated MoCo queue
  # do not depend on the sharding: the whole step is the single-device step
  print("max |Δparams|", max_abs_diff(one.params, many.params))
  assert max_abs_diff(one.params, many.params) <= 1e-5
  assert max_abs_diff(one.model_state, many.model_state) <= 1e-5
  assert max_abs_diff(one.opt_state, many.opt_state) <= 1e-5
  assert abs(float(one_metrics["loss"]) - float(metrics["loss"])) <= 1e-4 * abs(float(one_metrics["loss"]))
  assert len(setup.mesh.devices.flat) == 8 and setup.batch_sharding.spec[0] == ("data", "fsdp")
  # the parameters really are split over fsdp
  kernel = setup.shardings.params["model"]["generator"]["enc1_0"]["conv1"]["kernel"]
  assert kernel.spec == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert int(one.model_state["queue"]["ptr"]) == (int(state.model_state["queue"]["ptr"]) + 8) % 120


def test_evaluation_from_the_checkpoint_repeats_the_training_time_numbers(run):
  workdir, _ = run
  with open(os.path.join(workdir, "eval_history.jsonl")) as f:
    at_training = json.loads(f.readlines()[-1])
  results = trainer.evaluate(load_config(TINY, **ONE_DEVICE), workdir)
  assert results["step"] == at_training["step"] == 30 and results["num_examples"] == 6
  for method in cdd.METHODS:
    for name in cdd.IMAGE_METRICS:
      key = f"{method}_{name}"
      assert abs(results[key] - at_training[key]) < 1e-4, key
  # the baselines do not depend on the model; the noisy eval degradations are not the identity
  assert results["clean_psnr"] < 40 and results["residual_paste_psnr"] > 0
  assert os.path.exists(os.path.join(workdir, "cdd.png"))


def _pruned_state(task, full):
  """The ablated model's state, filled from the full model's values (same names; where the
  condition map loses its local channels, the first ones)."""
  abstract = nn.unbox(jax.eval_shape(task.init_state, jax.random.PRNGKey(0)))

  def take(tree, like):
    return jax.tree_util.tree_map_with_path(
        lambda path, a: np.asarray(_lookup(tree, path))[tuple(slice(0, n) for n in a.shape)], like)
  params = {"model": take(full.params["model"], abstract.params["model"]), "critic": full.params["critic"]}
  opt_state = {"model": jax.jit(task.model_tx.init)(params["model"]), "critic": full.opt_state["critic"]}
  return abstract.replace(step=full.step, params=params, opt_state=opt_state, rng=full.rng,
                          model_state=take(full.model_state, abstract.model_state))


def _lookup(tree, path):
  for entry in path:
    tree = tree[entry.key]
  return tree


@pytest.mark.parametrize("switch", sorted(ABLATIONS))
def test_each_ablation_builds_and_traces_a_step(trained, switch):
  config, task, state, batch = trained
  ablated = cdd.CddTask(load_config(TINY, **{f"model__{switch}": False}))
  abstract = nn.unbox(jax.eval_shape(ablated.init_state, jax.random.PRNGKey(0)))
  modules = set(abstract.params["model"])
  assert not modules & set(ABLATIONS[switch]) and "generator" in modules
  if switch == "use_ida":
    assert "ida" not in abstract.params["model"]["generator"]["enc1_0"]["sft1"]
  _, metrics = jax.eval_shape(ablated.train_step, abstract, batch)
  assert metrics["loss"].shape == ()


def test_all_ablations_together_run_a_step(trained):
  # one compiled step for the smallest model (no compressors, no local encoder, no IDA); the
  # single switches are traced above
  config, _, full, batch = trained
  task = cdd.CddTask(load_config(TINY, model__compress_global=False, model__compress_local=False,
                                     model__use_iden=False, model__use_ida=False))
  state = _pruned_state(task, full)
  new_state, metrics = jax.jit(task.train_step)(state, batch)
  assert int(new_state.step) == int(full.step) + 1
  assert np.isfinite(float(metrics["loss"])) and float(metrics["rate_global"]) == float(metrics["rate_local"]) == 0
  before = full.params["model"]["generator"]["conv_out"]["kernel"]
  assert float(np.abs(np.asarray(new_state.params["model"]["generator"]["conv_out"]["kernel"]) - before).max()) > 0


def test_eval_reference_and_target_share_every_degradation_parameter():
  # noise and (zero-filled) holes from the same key on two photos
  spec = [dict(name="gaussian_noise", intensity=0.2), dict(name="inpaint_mask", intensity=0.8, fill=0.0)]
  rng = np.random.default_rng(0)
  clean = rng.uniform(0.3, 0.7, (4, 32, 32, 3)).astype(np.float32)  # far from clipping
  batch = {"image": clean, "index": np.arange(10, 14, dtype=np.int32), "mask": np.array([1, 1, 1, 0], np.float32)}
  partner = clean[[2, 0, 1, 2]]  # the previous valid example; the first takes the last valid one

  def pairs(shared):
    task = cdd.CddTask(load_config(TINY, data__eval_degradations=spec, eval__shared_fields=shared))
    x, y, r = map(np.asarray, jax.jit(task.eval_pairs)(batch))
    return y, r, y - x, r - partner, y == 0  # holes are the only zeros

  # shared fields: off the holes y − x = r − x' exactly, and the holes coincide
  y, r, noise_y, noise_r, holes = pairs(True)
  same_noise = np.abs(noise_y - noise_r) < 1e-5
  assert (same_noise | (holes & (r == 0))).all()
  assert same_noise.mean() > 0.3 and holes.any()  # both kinds of pixel occur
  assert np.abs(y[0] - y[1]).max() > 0.1  # each example its own draw
  # the default: the same holes and noise level, but another noise pattern
  y2, r, noise_y, noise_r, holes = pairs(False)
  np.testing.assert_array_equal(y2, y)  # the target does not change
  np.testing.assert_array_equal(r == 0, holes)
  a, b = noise_y[~holes], noise_r[~holes]
  assert abs(np.corrcoef(a, b)[0, 1]) < 0.1 and 0.9 < b.std() / a.std() < 1.1
  # pairs: the reference is the previous example's degraded image
  paired = cdd.CddTask(load_config(TINY, data__eval_sources=(dict(kind="paired", path="/data/pairs"),)))
  degraded = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32)
  _, _, ref = paired.eval_pairs({"clean": degraded, "degraded": degraded, "mask": np.ones(3, np.float32)})
  np.testing.assert_array_equal(ref, degraded[[2, 0, 1]])
