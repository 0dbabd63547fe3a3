"""Faults during training: divergence, damaged checkpoints, unusable data, a second run, bad command lines."""
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxdeg import main, tasks
from jaxdeg.data import pipeline, skips, sources
from jaxdeg.errors import DataError, UserError
from jaxdeg.train import checkpoint as ckpt
from jaxdeg.train import lock, trainer
from tests.utils import load_config

TINY = "configs/restore_procedural.py:tiny"
QUIET = dict(mesh__num_devices=1, train__eval_every=0, train__log_every=100, train__checkpoint_every=1)


def _patch_task(monkeypatch, change):
  """tasks.get as the trainer calls it, with `change(task)` applied to the task it makes."""
  real = tasks.get

  def get(config):
    task = real(config)
    change(task)
    return task
  monkeypatch.setattr(trainer.tasks, "get", get)


def _saved(workdir):
  return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def _finite_params(workdir, step, config):
  with ckpt.create_manager(workdir, read_only=True) as mgr:
    state = ckpt.restore(mgr, step, trainer.Setup(config).abstract_state)
  return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_nan_at_step_3_leaves_step_2_on_disk_and_restorable(tmp_path, monkeypatch):
  def nan_at_step_3(task):
    step_fn = task.train_step

    def train_step(state, batch):
      new, metrics = step_fn(state, batch)
      bad = state.step == 2  # the step that makes step 3
      poison = lambda x: jnp.where(bad, jnp.nan, x)  # noqa: E731
      return new.replace(params=jax.tree.map(poison, new.params)), dict(metrics, loss=poison(metrics["loss"]))
    task.train_step = train_step
  _patch_task(monkeypatch, nan_at_step_3)
  config = load_config(TINY, steps=6, **QUIET)
  with pytest.raises(trainer.NonFiniteLossError) as e:
    trainer.train_and_evaluate(config, tmp_path)
  assert str(e.value).startswith("loss became nan at step 3; stopped; the last checkpoint is step 2 (")
  assert _saved(tmp_path) == ["1", "2"]  # step 2's async save finished, nothing half-written
  assert _finite_params(tmp_path, 2, config)
  assert not (tmp_path / lock.LOCK_FILE).exists()


def test_nan_learning_rate_says_no_checkpoint_survives(tmp_path):
  config = load_config(TINY, steps=3, optimizer__learning_rate=float("nan"), **QUIET)
  with pytest.raises(trainer.NonFiniteLossError) as e:
    trainer.train_and_evaluate(config, tmp_path)
  assert str(e.value).startswith("parameters became non-finite at step 1; stopped; no checkpoint was saved")
  assert _saved(tmp_path) == []


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory):
  """A run with checkpoints 1 and 2."""
  workdir = tmp_path_factory.mktemp("two_steps")
  config = load_config(TINY, steps=2, **QUIET)
  trainer.train_and_evaluate(config, workdir)
  return workdir, config


def _truncate_largest_array_file(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, "state")) for f in fs]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(os.path.getsize(largest) // 2)


CORRUPTIONS = {
    "truncated_array_file": _truncate_largest_array_file,
    "empty_metadata": lambda d: open(os.path.join(d, "state", "_METADATA"), "w").close(),
    "missing_item": lambda d: shutil.rmtree(os.path.join(d, "state")),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(two_steps, tmp_path, corruption, caplog):
  run, config = two_steps
  workdir = tmp_path / "run"
  shutil.copytree(run, workdir)
  CORRUPTIONS[corruption](str(workdir / "checkpoints" / "2"))
  caplog.clear()
  with ckpt.create_manager(workdir, read_only=True) as mgr:
    _, step = ckpt.restore_latest(mgr, trainer.Setup(config).abstract_state)
  assert step == 1
  warnings = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert len(warnings) == 1 and warnings[0].startswith(f"checkpoint step 2 in {workdir / 'checkpoints'} cannot be "
                                                       "restored (state: ") and warnings[0].endswith("using step 1 instead")


def test_evaluate_and_resume_use_the_previous_checkpoint(two_steps, tmp_path):
  run, config = two_steps
  workdir = tmp_path / "run"
  shutil.copytree(run, workdir)
  CORRUPTIONS["truncated_array_file"](str(workdir / "checkpoints" / "2"))
  assert trainer.evaluate(config, workdir)["step"] == 1
  assert json.loads((workdir / "metrics.json").read_text())["step"] == 1
  trainer.train_and_evaluate(load_config(TINY, steps=3, **QUIET), workdir)  # resumes from 1
  names = _saved(workdir)
  assert [n for n in names if n.isdigit()] == ["1", "2", "3"] and any(n.startswith("2.unrestorable-") for n in names)


def test_unusable_training_data_stops_with_data_skips_json(tmp_path, monkeypatch):
  data = tmp_path / "data"
  data.mkdir()
  for i in range(3):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(data / f"small{i}.png")  # smaller than the crop

  def hopeless(task):
    task.data_iterator = lambda: iter(pipeline.train_dataset(sources.FolderSource(data, validate=False), crop=32,
                                                             global_batch_size=8, seed=0))
  _patch_task(monkeypatch, hopeless)
  skips.reset()
  with pytest.raises(DataError, match=r"no training batch can be formed: all 3 records .* \(too_small: 3\)"):
    trainer.train_and_evaluate(load_config(TINY, steps=2, **QUIET), tmp_path / "w")
  saved = json.loads((tmp_path / "w" / skips.SUMMARY_FILE).read_text())
  assert saved["by_reason"] == {"too_small": 3}
  skips.reset()


def _hold_lock(workdir, pid, host=None):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, lock.LOCK_FILE), "w") as f:
    json.dump({"host": host or socket.gethostname(), "pid": pid, "since": "earlier"}, f)


def test_a_second_run_on_a_locked_workdir_stops_and_a_stale_lock_is_replaced(tmp_path):
  _hold_lock(tmp_path, os.getppid())  # a live process on this host
  with pytest.raises(UserError, match=f"--workdir={tmp_path} is in use by process {os.getppid()} on "):
    trainer.train_and_evaluate(load_config(TINY, steps=1, **QUIET), tmp_path)
  assert not (tmp_path / "checkpoints").exists()
  _hold_lock(tmp_path, os.getppid(), host="elsewhere")  # cannot be checked: refused, with the file to delete
  with pytest.raises(UserError, match="if that run is dead, delete"):
    with lock.held(str(tmp_path)):
      pass
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  _hold_lock(tmp_path, int(dead.stdout))  # killed -9 earlier: its process is gone
  with lock.held(str(tmp_path)):
    assert json.loads((tmp_path / lock.LOCK_FILE).read_text())["pid"] == os.getpid()
  assert not (tmp_path / lock.LOCK_FILE).exists()


def _write(path, text):
  path.write_text(text)
  return str(path)


BAD_COMMAND_LINES = {
    "missing config file": (["--config=/no/such/config.py"], "--config=/no/such/config.py: no such file"),
    "syntax error": (["--config={syntax}"], "syntax error at line 1"),
    "no get_config": (["--config={noget}"], "the file defines no get_config()"),
    "unknown variant": ([f"--config={TINY[:-5]}:nope"], "unknown variant 'nope'; variants: tiny"),
    "unknown field": (["--config.train.nope=3"], "--config.train.nope: no such config field"),
    "batch -8": (["--config.train.batch_size=-8"], "config.train.batch_size=-8: must be an integer >= 1"),
    "batch 0": (["--config.train.batch_size=0"], "config.train.batch_size=0: must be an integer >= 1"),
    "checkpoint_every 0": (["--config.train.checkpoint_every=0"], "config.train.checkpoint_every=0: must be"),
    "log_every 0": (["--config.train.log_every=0"], "config.train.log_every=0: must be an integer >= 1"),
    "crop 0": (["--config.data.crop=0"], "config.data.crop=0: must be an integer >= 1"),
    "steps abc": (["--config.train.steps=abc"], "flag --config.train.steps=abc: invalid literal for int()"),
    "steps -5": (["--config.train.steps=-5"], "config.train.steps=-5: must be an integer >= 1"),
    "locked workdir": (["--lock"], "is in use by process"),
    # init_from defaults to None: the override must parse and reach the trainer
    "override of a None field": (["--config.train.steps=3", "--config.init_from=/nonexistent/run"],
                                 "config.init_from=/nonexistent/run: no checkpoint found there"),
    "mesh that does not fit": (["--config.mesh.fsdp=3"], "jaxdeg: error: config.mesh="),
}


@pytest.mark.parametrize("case", list(BAD_COMMAND_LINES))
def test_bad_command_line_is_one_error_line_and_exit_2(case, tmp_path, capfd):
  args, expected = BAD_COMMAND_LINES[case]
  files = dict(syntax=_write(tmp_path / "syntax.py", "def get_config(:\n"), noget=_write(tmp_path / "noget.py", "x = 1\n"))
  args = [a.format(**files) for a in args]
  if args == ["--lock"]:
    _hold_lock(tmp_path / "w", os.getppid())
    args = []
  if not any(a.startswith("--config=") for a in args):
    args = [f"--config={TINY}", *args]
  with pytest.raises(SystemExit) as e:
    main.main(["jaxdeg.main", *args, f"--workdir={tmp_path / 'w'}"])
  assert e.value.code == 2
  err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
  assert len(err) == 1 and err[0].startswith("jaxdeg: error: ") and expected in err[0], err
