"""Two processes × 4 fake CPU devices (jax.distributed over localhost, gloo collectives)."""
import os
import signal
import subprocess
import sys
import time

import portpicker

from jaxdeg.train import checkpoint as ckpt
from jaxdeg.train import trainer
from tests.utils import ROOT, load_config, max_abs_diff

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


def test_two_processes_match_one_process_and_restore_elsewhere(tmp_path):
  procs = launch(tmp_path / "multi", "--log", tmp_path / "log")
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  reference = trainer.train_and_evaluate(load_config(TINY, steps=STEPS, overrides=COMMON), tmp_path / "single")

  for mesh in (["mesh.fsdp=2"], ["mesh.num_devices=2", "mesh.fsdp=1"]):
    setup = trainer.Setup(load_config(TINY, steps=STEPS, overrides=COMMON[:2] + mesh))
    with ckpt.create_manager(tmp_path / "multi", read_only=True) as mgr:
      restored = ckpt.restore(mgr, STEPS, setup.abstract_state)
    assert max_abs_diff(restored.params, reference.params) <= 1e-5, mesh
    assert len(restored.params["intro"]["kernel"].sharding.device_set) == len(setup.mesh.devices.flat)


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
