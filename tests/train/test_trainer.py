"""The generic trainer: sharding equivalence, kill/resume, restore onto other meshes, errors."""
import json
import os
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest

from jaxdeg.errors import ConfigError
from jaxdeg.train import trainer
from tests.train import driver
from tests.utils import ROOT, load_config, max_abs_diff

TINY = "configs/restore_procedural.py:tiny"


def run_driver(workdir, steps, *args, check=True):
  cmd = [sys.executable, "-m", "tests.train.driver", str(workdir), str(steps), *map(str, args)]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  if check and proc.returncode != 0:
    raise AssertionError(f"driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  return proc


def read_log(path):
  with open(path) as f:
    return {r["step"]: r["batch"] for r in map(json.loads, f)}


def test_sharded_8_devices_equals_1_device(tmp_path):
  assert jax.device_count() == 8
  no_eval = dict(train__eval_every=0, train__checkpoint_every=100)
  one = trainer.train_and_evaluate(load_config(TINY, steps=5, mesh__num_devices=1, **no_eval), tmp_path / "one")
  eight = trainer.train_and_evaluate(load_config(TINY, steps=5, mesh__data=4, mesh__fsdp=2, **no_eval),
                                     tmp_path / "eight")
  assert int(one.step) == int(eight.step) == 5
  # params really are split over fsdp on the 8-device run
  kernel = eight.params["intro"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert kernel.addressable_shards[0].data.shape[-1] == kernel.shape[-1] // 2
  assert max_abs_diff(one.params, eight.params) <= 1e-5
  assert max_abs_diff(one.opt_state, eight.opt_state) <= 1e-5


def test_killed_and_resumed_equals_uninterrupted(tmp_path):
  first_log = tmp_path / "first.jsonl"
  # the uninterrupted run and the resumption in this process (the driver's config and batch hashes);
  # killing needs a process of its own
  config = load_config(TINY, steps=20, train__tensorboard=False)

  def recorder(seen):
    return lambda step, batch, state: seen.__setitem__(step, driver.batch_hash(batch))

  straight, second = {}, {}
  trainer.train_and_evaluate(config, tmp_path / "straight", hooks=[recorder(straight)])
  # killed with SIGKILL at step 12, after checkpoint 10 is final: steps 11, 12 are lost
  killed = run_driver(tmp_path / "resumed", 20, "--kill-at", 12, "--wait-ckpt", 10, "--log", first_log, check=False)
  assert killed.returncode == -9, killed.stderr[-2000:]
  trainer.train_and_evaluate(config, tmp_path / "resumed", hooks=[recorder(second)])

  first = read_log(first_log)
  assert sorted(straight) == list(range(1, 21)) and sorted(first) == list(range(1, 13)) and sorted(second) == list(range(11, 21))
  assert all(first[s] == straight[s] for s in first)
  assert all(second[s] == straight[s] for s in second), "resumed run saw different batches"

  setup = trainer.Setup(config)
  from jaxdeg.train import checkpoint as ckpt
  states = []
  for name in ("straight", "resumed"):
    with ckpt.create_manager(tmp_path / name, read_only=True) as mgr:
      assert mgr.latest_step() == 20
      states.append(ckpt.restore(mgr, 20, setup.abstract_state))
  for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sigterm_saves_and_returns_normally(tmp_path):
  # a real SIGTERM to this process at step 7: the trainer's handler (installed on the main thread,
  # where pytest runs tests) turns it into a checkpoint and a normal return, then puts the old one back
  assert threading.current_thread() is threading.main_thread()
  before = signal.getsignal(signal.SIGTERM)

  def hook(step, batch, state):
    del batch, state
    if step == 7:
      os.kill(os.getpid(), signal.SIGTERM)

  # the kill/resume test's config: one compiled program for both
  state = trainer.train_and_evaluate(load_config(TINY, steps=20, train__tensorboard=False), tmp_path / "w",
                                     hooks=[hook])
  assert int(state.step) == 7
  assert sorted(os.listdir(tmp_path / "w" / "checkpoints")) == ["7"]
  assert signal.getsignal(signal.SIGTERM) is before


def test_evaluate_restores_8_device_checkpoint_on_1_and_4_devices(tmp_path):
  config = load_config(TINY, steps=10, mesh__data=4, mesh__fsdp=2)
  trainer.train_and_evaluate(config, tmp_path)
  with open(tmp_path / "eval_history.jsonl") as f:
    at_training = json.loads(f.readlines()[-1])
  assert at_training["step"] == 10
  for mesh in (dict(mesh__num_devices=1, mesh__data=-1, mesh__fsdp=1),
               dict(mesh__num_devices=4, mesh__data=2, mesh__fsdp=2)):
    results = trainer.evaluate(load_config(TINY, steps=10, **mesh), tmp_path)
    assert results["step"] == 10
    for k in ("psnr_input", "psnr_output"):
      assert abs(results[k] - at_training[k]) < 1e-4, (mesh, k, results[k], at_training[k])
  with open(tmp_path / "metrics.json") as f:
    assert json.load(f)["num_examples"] == 2
  assert (tmp_path / "restored.png").exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  common = dict(train__checkpoint_every=2, train__eval_every=0, train__log_every=100)
  trainer.train_and_evaluate(load_config(TINY, steps=4, **common), tmp_path)
  # resume with an absurd learning rate: the loss blows up within a few steps
  diverging = load_config(TINY, steps=40, optimizer__learning_rate=1e12, optimizer__grad_clip=1e30, **common)
  with pytest.raises(trainer.NonFiniteLossError, match=r"(loss became (nan|inf)|parameters became non-finite) at step \d+"):
    trainer.train_and_evaluate(diverging, tmp_path)
  saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  setup = trainer.Setup(diverging)
  from jaxdeg.train import checkpoint as ckpt
  with ckpt.create_manager(tmp_path, read_only=True) as mgr:
    for step in saved:
      state = ckpt.restore(mgr, step, setup.abstract_state)
      assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params)), step
  assert 4 in saved


@pytest.mark.parametrize("field,value,message", [
    ("task", "no_such_task", "config.task='no_such_task' is not a jaxdeg task"),
    ("mesh.data", 3, "needs 3 devices, but 8 are in use"),
    ("train.batch_size", 12, "config.train.batch_size=12 is not divisible by the 8 batch shards"),
])
def test_bad_config_values_raise_clear_errors(tmp_path, field, value, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
    trainer.train_and_evaluate(load_config(TINY, overrides=[f"{field}={value!r}"]), tmp_path)


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(ConfigError, match="cannot write there"):
    trainer.ensure_workdir(str(blocker / "workdir"))
  if os.geteuid() != 0:  # root ignores permission bits
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="cannot write there"):
      trainer.ensure_workdir(str(locked / "w"))


def test_compile_mode_reports_memory_and_flops_without_training(tmp_path):
  from jaxdeg import main
  report = main.run(load_config(TINY, mesh__data=4, mesh__fsdp=2), str(tmp_path), mode="compile")
  with open(tmp_path / "compile_report.json") as f:
    assert json.load(f) == json.loads(json.dumps(report))
  assert report["mesh"] == {"data": 4, "fsdp": 2} and report["global_batch"]["image"][0] == 8
  assert report["per_device_flops_per_step"] > 0 and report["per_device_argument_size_bytes"] > 0
  assert not (tmp_path / "checkpoints").exists()


def test_console_script_knows_every_mode_and_names_them_for_an_unknown_command(capsys):
  from jaxdeg import cli, main
  assert cli.main(["jaxdeg", "no_such_command"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("jaxdeg: error: unknown command 'no_such_command'") and "\n" not in err
  assert all(mode in err for mode in main.MODES) and "gendeg" in err
