"""Two processes × 4 fake CPU devices (jax.distributed over localhost, gloo collectives).

The 2-process = 1-process equivalence and elastic restore run through the SLURM launcher in
test_launchers.py; here, the failure of one process.
"""
import os
import signal
import subprocess
import sys
import time

import portpicker

from tests.utils import ROOT

TINY = "configs/demo.py:tiny"
STEPS = 10
COMMON = ["train.eval_every=0", f"train.checkpoint_every={STEPS}", "mesh.fsdp=2"]


def launch(workdir, *extra, steps=STEPS, heartbeat=60, per_process=((), ())):
  port = portpicker.pick_unused_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  return [subprocess.Popen(
      [sys.executable, "-m", "tests.train.driver", str(workdir), str(steps), "--coordinator", f"localhost:{port}",
       "--num-processes", "2", "--process-id", str(i), "--heartbeat-timeout", str(heartbeat), *extra,
       *per_process[i], "--set", *COMMON], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]


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
