"""Two processes × 4 fake CPU devices (jax.distributed over localhost, gloo collectives): directly,
and through launch/slurm.sbatch under the local SLURM stand-in (fake_slurm/srun, scontrol).

Marked `serial`: `make test` runs these after the parallel part, alone on the machine, because
gloo's rendezvous times out when two multi-process runs compete for two loaded cores.
"""
import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import portpicker
import pytest

from jaxdeg.train import checkpoint as ckpt
from jaxdeg.train import trainer
from tests.train.driver import example_hashes
from tests.utils import ROOT, load_config, max_abs_diff, xla_flags

pytestmark = pytest.mark.serial

TINY = "configs/restore_procedural.py:tiny"
STEPS = 10
COMMON = ["train.eval_every=0", f"train.checkpoint_every={STEPS}", "mesh.fsdp=2"]
FAKE_SLURM = os.path.join(ROOT, "tests", "train", "fake_slurm")


def launch(workdir, *extra, steps=STEPS, heartbeat=60, per_process=((), ())):
  port = portpicker.pick_unused_port()
  env = dict(os.environ, XLA_FLAGS=xla_flags(4), JAX_PLATFORMS="cpu")
  return [subprocess.Popen(
      [sys.executable, "-m", "tests.train.driver", str(workdir), str(steps), "--coordinator", f"localhost:{port}",
       "--num-processes", "2", "--process-id", str(i), "--heartbeat-timeout", str(heartbeat), *extra,
       *per_process[i], "--set", *COMMON], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
  """The 1-process 8-device run both multi-process runs must equal, with its examples per step."""
  examples = {}

  def hook(step, batch, state):
    del state
    examples[step] = example_hashes(batch)

  state = trainer.train_and_evaluate(load_config(TINY, steps=STEPS, overrides=COMMON),
                                     tmp_path_factory.mktemp("single"), hooks=[hook])
  return state, examples


def test_two_processes_read_their_own_shards_and_match_one_process(tmp_path, one_process):
  reference, reference_examples = one_process
  log = tmp_path / "log"
  procs = launch(tmp_path / "multi", "--log", log)
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]

  per_process = {}
  for line in open(log):
    entry = json.loads(line)
    per_process.setdefault(entry["process"], {})[entry["step"]] = entry["examples"]
  assert sorted(per_process) == [0, 1]
  for step, everything in reference_examples.items():
    first, second = per_process[0][step], per_process[1][step]
    # Each process loads half of the global batch, the halves are disjoint and together are the
    # batch the single process loads.
    assert len(first) == len(second) == len(everything) // 2, step
    assert not set(first) & set(second), step
    assert sorted(first + second) == sorted(everything), step

  setup = trainer.Setup(load_config(TINY, steps=STEPS, overrides=COMMON))
  with ckpt.create_manager(tmp_path / "multi", read_only=True) as mgr:
    restored = ckpt.restore(mgr, STEPS, setup.abstract_state)
  assert max_abs_diff(restored.params, reference.params) <= 1e-5


def test_slurm_script_under_a_stand_in_matches_one_process_and_resumes_elsewhere(tmp_path, one_process, caplog):
  reference, _ = one_process
  workdir = tmp_path / "slurm"
  env = dict(os.environ, PATH=f"{FAKE_SLURM}:{os.environ['PATH']}", PYTHON=sys.executable,
             SLURM_JOB_ID="4242", SLURM_NTASKS="2", SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="node[1-2]",
             JAXDEG_COORDINATOR_PORT=str(portpicker.pick_unused_port()), JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags(4))
  flags = [f"--config.{o}" for o in [f"train.steps={STEPS}", *COMMON]]
  run = subprocess.run(["bash", os.path.join(ROOT, "launch", "slurm.sbatch"), TINY, str(workdir), *flags],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  # (the interpreter's list of extension modules after a crash would hide the cause)
  assert run.returncode == 0, "\n".join(l for l in run.stderr.splitlines() if "Extension modules" not in l)[-6000:]
  assert "2 processes on 2 nodes, coordinator localhost:" in run.stdout
  assert ckpt.latest_step(workdir) == STEPS

  # The checkpoint the two processes wrote restores on 8 and on 2 devices of one process.
  for mesh in ([], ["mesh.num_devices=2", "mesh.fsdp=1"]):
    setup = trainer.Setup(load_config(TINY, steps=STEPS, overrides=COMMON + mesh))
    with ckpt.create_manager(workdir, read_only=True) as mgr:
      restored = ckpt.restore(mgr, STEPS, setup.abstract_state)
    for part in ("params", "opt_state", "ema_params"):
      assert max_abs_diff(getattr(restored, part), getattr(reference, part)) <= 1e-5, (mesh, part)
    assert len(restored.params["intro"]["kernel"].sharding.device_set) == len(setup.mesh.devices.flat)

  # Elastic resume: the 2-process checkpoint continues in this single process on 8 devices; the
  # data iterator was saved per process, so the pipeline restarts with a logged notice.
  caplog.set_level(logging.WARNING)
  resumed = trainer.train_and_evaluate(load_config(TINY, steps=STEPS + 2, overrides=COMMON), workdir)
  assert int(resumed.step) == STEPS + 2
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(resumed.params))
  assert any("data iterator state" in r.getMessage() and "restarts" in r.getMessage() for r in caplog.records), \
      [r.getMessage() for r in caplog.records]


def test_killing_one_process_stops_the_other_with_an_error(tmp_path):
  procs = launch(tmp_path / "w", steps=100000, heartbeat=10, per_process=((), ("--kill-at", "3")))
  start = time.monotonic()
  try:
    _, err = procs[0].communicate(timeout=240)
  finally:
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGKILL)
  elapsed = time.monotonic() - start
  assert procs[1].wait() == -9
  assert procs[0].returncode != 0, "the surviving process kept going"
  assert elapsed < 240
  tail = err[-3000:].lower()
  assert any(w in tail for w in ("heartbeat", "unavailable", "connection", "failed", "terminat")), tail
