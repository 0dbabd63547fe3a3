"""A trained run as a Python object: its saved config, its task and its restored state.

Used wherever a checkpoint is *applied* rather than trained (synthesis, folder restoration,
degradation transfer). The state is restored replicated on this process's own devices, so each
process can use it without talking to the others.
"""
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdeg import tasks
from jaxdeg.errors import UserError
from jaxdeg.train import checkpoint as ckpt
from jaxdeg.train import partitioning


def local_mesh() -> Mesh:
  return Mesh(np.array(jax.local_devices()), ("data",))


def load_run(workdir, step=None, **config_overrides):
  """(config, task, state, step) of the run in `workdir` (`step`, or the newest checkpoint whose
  config and state both restore)."""
  def attempt(at):
    config, _ = ckpt.restore_config(workdir, at)
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
    return config, task, ckpt.restore(mgr, at, abstract)

  if not os.path.isdir(ckpt.checkpoint_dir(workdir)):
    raise UserError(f"{workdir}: no checkpoints ({ckpt.checkpoint_dir(workdir)} does not exist); train that run "
                    "first")
  with ckpt.create_manager(workdir, read_only=True) as mgr:
    (config, task, state), step = (ckpt.newest_restorable(mgr, attempt) if step is None
                                   else (attempt(step), step))
  return config, task, state, step
