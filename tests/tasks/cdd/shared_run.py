"""One tiny `cdd` run per pytest invocation, shared by the modules of this package and by pytest-xdist
workers (a file lock: the first worker trains, the others wait and reuse it)."""
import fcntl
import json
import os

from jaxdeg.train import trainer, writers
from tests.utils import load_config

TINY = "configs/cdd_general.py:tiny"
ONE_DEVICE = dict(mesh__num_devices=1)  # the run's mesh: a step is faster there than on 8 fake devices


class _RecordingWriter:
  """Passes everything to the real writer and keeps the scalars (the per-step training metrics)."""

  def __init__(self, inner, records):
    self.inner, self.records = inner, records

  def write_scalars(self, step, scalars):
    self.records.append({"step": int(step), **{k: float(v) for k, v in scalars.items()}})
    self.inner.write_scalars(step, scalars)

  def __getattr__(self, name):
    return getattr(self.inner, name)


def _train(workdir):
  records, real = [], writers.create_writer
  writers.create_writer = lambda d, **kw: _RecordingWriter(real(d, **kw), records)
  try:
    trainer.train_and_evaluate(load_config(TINY, **ONE_DEVICE), workdir)
  finally:
    writers.create_writer = real
  return [r for r in records if any(k.startswith("train/") for k in r)]


def tiny_run(tmp_path_factory):
  """(workdir, training scalars logged every config.train.log_every steps) of the :tiny run."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the directory all workers of this pytest invocation share
  workdir, done = root / "cdd_tiny_run", root / "cdd_tiny_run.json"
  with open(root / "cdd_tiny_run.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      done.write_text(json.dumps(_train(str(workdir))))
  return str(workdir), json.loads(done.read_text())
