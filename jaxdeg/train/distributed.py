"""JAX's multi-controller runtime: one process per host (or per GPU), all running the same program.

`initialize()` is a no-op for a single process. It connects the processes either from explicit
flags (coordinator address, process count and id) or, with no flags, from the environment that
`jax.distributed.initialize()` recognises itself (TPU pods, SLURM, Open MPI, Kubernetes JobSets).
CPU-only multi-process runs use gloo collectives.
"""
import os

import jax
from absl import logging

from jaxdeg.errors import ConfigError

def _multi_process_environment() -> bool:
  """Whether the environment says this process is one of several (jax.distributed auto-detects these)."""
  if int(os.environ.get("SLURM_NTASKS", "1")) > 1 or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return True
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return "," in hosts or "JOBSET_NAME" in os.environ or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ


def initialize(coordinator_address=None, num_processes=None, process_id=None, *,
               initialization_timeout=300, heartbeat_timeout=60):
  """Connects this process to the others; returns (process_index, process_count)."""
  explicit = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
    raise ConfigError("--coordinator_address, --num_processes and --process_id go together: "
                      f"got {coordinator_address!r}, {num_processes!r}, {process_id!r}")
  if num_processes is not None and not 0 <= process_id < num_processes:
    raise ConfigError(f"--process_id={process_id} must be in 0..{num_processes - 1}")
  if num_processes == 1 or (num_processes is None and not _multi_process_environment()):
    return jax.process_index(), jax.process_count()
  # CPU devices of different processes talk through gloo; GPU/TPU collectives are unaffected.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = dict(initialization_timeout=initialization_timeout, heartbeat_timeout_seconds=heartbeat_timeout)
  try:
    if num_processes is None:
      jax.distributed.initialize(**_supported(kwargs))
    else:
      jax.distributed.initialize(coordinator_address, num_processes, process_id, **_supported(kwargs))
  except (RuntimeError, ValueError) as e:
    raise ConfigError(f"could not join the distributed run (coordinator {coordinator_address or 'from environment'}):"
                      f" {str(e).splitlines()[0]}") from None
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return jax.process_index(), jax.process_count()


def fetch_global(tree):
  """Device arrays -> host numpy arrays of their global values, on every process (an all-gather
  when there are several processes: shards on other hosts cannot be read directly)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)


def shutdown():
  """Leaves the distributed run together with the others (a barrier), so no process exits while
  another still talks to the coordinator; a no-op for a single process."""
  if jax.process_count() > 1:
    jax.distributed.shutdown()


def _supported(kwargs):
  """Keeps only the keyword arguments this JAX version's initialize() accepts."""
  import inspect
  params = inspect.signature(jax.distributed.initialize).parameters
  return {k: v for k, v in kwargs.items() if k in params}
