"""Tiny GenDeg runs shared by the tests: each is trained once per test session, also when the tests
are spread over several pytest-xdist workers (a file lock guards each run's folder)."""
import contextlib
import fcntl
import json
import os

import pytest

from jaxdeg.train import trainer, writers
from tests.utils import load_config

# The training runs use one device (XLA:CPU compiles and runs the tiny models fastest there); the
# LDM test compares a sharded step with it.
ONE_DEVICE = dict(mesh__num_devices=1, mesh__data=-1, mesh__fsdp=1)
SHARDED = dict(mesh__num_devices=-1, mesh__data=4, mesh__fsdp=2)


def train_recording_losses(config, workdir):
  """trainer.train_and_evaluate, returning {step: train/loss} as the trainer writes it."""
  losses = {}
  create = writers.create_writer

  def recording(wd, **kw):
    writer = create(wd, **kw)
    write = writer.write_scalars

    def write_scalars(step, scalars):
      if "train/loss" in scalars:
        losses[int(step)] = float(scalars["train/loss"])
      write(step, scalars)
    writer.write_scalars = write_scalars
    return writer

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(writers, "create_writer", recording)
    trainer.train_and_evaluate(config, workdir)
  return losses


@contextlib.contextmanager
def _locked(path):
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def shared_run(tmp_path_factory, name, make_config):
  """(workdir, {step: loss}) of a run trained once per session (xdist workers share the parent of
  their base temp folders)."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent
  workdir = root / f"gendeg_{name}"
  with _locked(str(root / f"gendeg_{name}.lock")):
    record = root / f"gendeg_{name}_losses.json"
    if not record.exists():
      record.write_text(json.dumps(train_recording_losses(make_config(), str(workdir))))
  return workdir, {int(k): v for k, v in json.loads(record.read_text()).items()}


def vae_config(**fields):
  return load_config("configs/gendeg_vae.py:tiny", **{**ONE_DEVICE, **fields})


def ldm_config(vae_workdir, **fields):
  return load_config("configs/gendeg_ldm.py:tiny", **{"vae__workdir": str(vae_workdir), **ONE_DEVICE, **fields})


def first_last(losses, n=5):
  steps = sorted(losses)
  mean = lambda s: sum(losses[k] for k in s) / len(s)
  return mean(steps[:n]), mean(steps[-n:])


def last_eval(workdir):
  with open(os.path.join(workdir, "eval_history.jsonl")) as f:
    return json.loads(f.readlines()[-1])


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory):
  return shared_run(tmp_path_factory, "vae", lambda: vae_config(steps=20, train__log_every=1))


def structure_config(**fields):
  return load_config("configs/gendeg_structure.py:tiny", **{**ONE_DEVICE, **fields})


# Motion blur on photos resized to 48² before the 32² crop: textured content, where a misalignment
# of a few pixels costs PSNR (on 32² crops of the full-size photos it hardly does), so the run can
# show the corrector re-aligning; 200 steps take the tiny NAFNet past its random output layer.
STRUCTURE_RUN = dict(steps=200, pairs__types=("motion_blur",), data__resize=48, train__log_every=1,
                     train__eval_every=200, train__checkpoint_every=200)


@pytest.fixture(scope="session")
def structure_run(tmp_path_factory):
  return shared_run(tmp_path_factory, "structure", lambda: structure_config(**STRUCTURE_RUN))


@pytest.fixture(scope="session")
def ldm_run(tmp_path_factory, vae_run):
  return shared_run(tmp_path_factory, "ldm",
                    lambda: ldm_config(vae_run[0], steps=30, train__log_every=1, train__eval_every=30))
