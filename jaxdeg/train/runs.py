"""A trained run as a Python object: its saved config, its task and its restored state.

Used wherever a checkpoint is *applied* rather than trained (synthesis, folder restoration,
degradation transfer). The state is restored replicated on this process's own devices, so each
process can use it without talking to the others.
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdeg import tasks
from jaxdeg.train import checkpoint as ckpt
from jaxdeg.train import partitioning


def local_mesh() -> Mesh:
  return Mesh(np.array(jax.local_devices()), ("data",))


def load_run(workdir, step=None, **config_overrides):
  """(config, task, state, step) of the run in `workdir` (latest checkpoint, or `step`)."""
  config, step = ckpt.restore_config(workdir, step)
  for key, value in config_overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  task = tasks.get(config)
  abstract = partitioning.unbox(jax.eval_shape(task.init_state, jax.random.PRNGKey(config.seed)))
  replicated = NamedSharding(local_mesh(), PartitionSpec())
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), abstract)
  with ckpt.create_manager(workdir, read_only=True) as mgr:
    state = ckpt.restore(mgr, step, abstract)
  return config, task, state, step
