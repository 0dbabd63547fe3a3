"""Runs the trainer in a separate process for tests that kill, signal or resume it.

  python -m tests.train.driver WORKDIR STEPS [--kill-at N --wait-ckpt S]
      [--log FILE] [--set field=value ...] [--coordinator HOST:PORT --num-processes N --process-id I]
--log appends one JSON line per step: step, process index, hash of the host batch and of each example.
"""
import argparse
import hashlib
import json
import os
import signal
import time

from tests import conftest  # noqa: F401  (8 fake devices, as in the tests)
import jax  # noqa: E402
from tests.utils import load_config


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("steps", type=int)
  p.add_argument("--kill-at", type=int)
  p.add_argument("--wait-ckpt", type=int, help="before killing, wait until this checkpoint is final")
  p.add_argument("--log")
  p.add_argument("--set", nargs="*", default=[])
  p.add_argument("--coordinator")
  p.add_argument("--num-processes", type=int)
  p.add_argument("--process-id", type=int)
  p.add_argument("--heartbeat-timeout", type=int, default=60)
  a = p.parse_args()
  if a.coordinator:
    from jaxdeg.train import distributed
    distributed.initialize(a.coordinator, a.num_processes, a.process_id, heartbeat_timeout=a.heartbeat_timeout)
  # no TensorBoard: these runs test resumption and processes, and TensorFlow's import costs seconds
  config = load_config("configs/restore_procedural.py:tiny", steps=a.steps,
                       overrides=["train.tensorboard=False", *a.set])
  from jaxdeg.train import trainer

  def hook(step, batch, state):
    del state
    if a.log:
      with open(a.log, "a") as f:
        f.write(json.dumps({"step": step, "process": jax.process_index(), "batch": batch_hash(batch),
                            "examples": example_hashes(batch)}) + "\n")
    if step == a.kill_at:
      final = os.path.join(a.workdir, "checkpoints", str(a.wait_ckpt))
      deadline = time.time() + 120
      while a.wait_ckpt and not os.path.isdir(final) and time.time() < deadline:
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)

  trainer.train_and_evaluate(config, a.workdir, hooks=[hook])


def batch_hash(batch):
  h = hashlib.sha256()
  for k in sorted(batch):
    h.update(k.encode())
    h.update(batch[k].tobytes())
  return h.hexdigest()


def example_hashes(batch):
  """One hash per example of the host batch (over every field), to tell which process loaded what."""
  n = len(next(iter(batch.values())))
  return [batch_hash({k: v[i] for k, v in batch.items()}) for i in range(n)]


if __name__ == "__main__":
  main()
