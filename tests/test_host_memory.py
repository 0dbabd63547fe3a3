"""jaxdeg.host_memory: XLA:CPU's per-call buffers reused instead of page-faulted in again."""
import json
import os
import platform
import subprocess
import sys

import pytest

# A fresh process per case: malloc arenas are fixed by a thread's first allocation. The jitted call
# needs ~90 MB of buffers (a sort of 4 M floats and its intermediates), freed when it returns.
SCRIPT = """
import json, resource, sys
from jaxdeg import host_memory
applied = host_memory.reuse_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sort(x * 2.0)[::2].sum())
x = jnp.ones(4 << 20, jnp.float32)
faults = []
for _ in range(3):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(f(x))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _run(setting):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("JAXDEG_HOST_MALLOC", None)
  if setting is not None:
    env["JAXDEG_HOST_MALLOC"] = setting
  out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's settings are glibc's")
def test_repeated_calls_stop_faulting_in_their_buffers():
  reused, default = _run(None), _run("default")
  assert reused["applied"] and not default["applied"]
  page = os.sysconf("SC_PAGE_SIZE")
  # glibc's default: every call maps its large buffers afresh (~90 MB here)
  assert min(default["faults"][1:]) * page > 50e6, default
  # reused: later calls fault in under half of that (measured: a quarter)
  assert max(reused["faults"][1:]) < 0.5 * min(default["faults"][1:]), (reused, default)
