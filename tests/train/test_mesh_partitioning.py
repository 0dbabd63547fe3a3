import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import pytest
from jax.sharding import PartitionSpec as P

from jaxdeg.errors import ConfigError
from jaxdeg.models import layers
from jaxdeg.train import mesh as mesh_lib
from jaxdeg.train import partitioning


def mesh_config(**kw):
  return ml_collections.ConfigDict(dict(dict(data=-1, fsdp=1, num_devices=-1), **kw))


def test_fill_axis_and_subsets():
  assert dict(mesh_lib.make_mesh(mesh_config(fsdp=2)).shape) == {"data": 4, "fsdp": 2}
  assert dict(mesh_lib.make_mesh(mesh_config(data=2, fsdp=-1)).shape) == {"data": 2, "fsdp": 4}
  assert dict(mesh_lib.make_mesh(mesh_config(num_devices=4, fsdp=2)).shape) == {"data": 2, "fsdp": 2}


@pytest.mark.parametrize("kw,message", [
    (dict(data=3), "needs 3 devices"), (dict(fsdp=3), "not divisible"), (dict(data=-1, fsdp=-1), "only one axis"),
    (dict(num_devices=9), "num_devices=9"), (dict(fsdp=0), "positive integer"),
])
def test_bad_mesh(kw, message):
  with pytest.raises(ConfigError, match=message):
    mesh_lib.make_mesh(mesh_config(**kw))


class Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = layers.Conv(16, (3, 3))(x)     # 16 output channels: split over fsdp=4
    return layers.Dense(6)(x)          # 6 is not divisible by 4: stays replicated


def test_logical_rules_shard_divisible_dims_only():
  mesh = mesh_lib.make_mesh(mesh_config(data=2, fsdp=4))
  abstract = jax.eval_shape(Tiny().init, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
  sh = partitioning.state_shardings(abstract, mesh)["params"]
  assert sh["Conv_0"]["kernel"].spec == P(None, None, None, "fsdp")
  assert sh["Conv_0"]["bias"].spec == P("fsdp")
  assert sh["Dense_0"]["kernel"].spec == P(None, None)
  with pytest.raises(ConfigError, match="unknown mesh axis 'model'"):
    partitioning.state_shardings(abstract, mesh, rules=(("out", "model"),))
