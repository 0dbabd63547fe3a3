"""Logical axis names -> mesh shardings, by config rules (MaxText style).

Models annotate parameters with logical names (jaxdeg.models.layers). A rule maps a logical
name to a mesh axis; a dimension the mesh axis does not divide stays replicated, so any model
runs on any mesh (small layers simply are not split).
"""
import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdeg.errors import ConfigError

DEFAULT_RULES = (("out", "fsdp"), ("in", None), ("kh", None), ("kw", None), ("heads", None))


def _is_box(x):
  return isinstance(x, nn.Partitioned)


def _mesh_spec(box, mesh: Mesh, rules):
  shape = box.value.shape
  if isinstance(box, nn.LogicallyPartitioned):
    spec = nn.logical_to_mesh_axes(box.names, rules)
  else:  # already in mesh axis names
    spec = P(*box.names)
  resolved = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    size = 1
    for a in names:
      size *= mesh.shape[a]
    resolved.append(axes if names and dim % size == 0 else None)
  return P(*resolved)


def state_shardings(abstract_boxed_state, mesh: Mesh, rules=DEFAULT_RULES):
  """Shardings tree (same structure as the unboxed state) from a boxed abstract state."""
  for logical, axis in rules:
    if axis is not None and axis not in mesh.axis_names:
      raise ConfigError(f"config.sharding.rules maps {logical!r} to unknown mesh axis {axis!r}; "
                        f"mesh axes are {mesh.axis_names}")

  def one(x):
    if _is_box(x):
      return NamedSharding(mesh, _mesh_spec(x, mesh, rules))
    return NamedSharding(mesh, P())
  return jax.tree.map(one, abstract_boxed_state, is_leaf=_is_box)


def unbox(tree):
  return nn.meta.unbox(tree)


def rules_from_config(config):
  rules = config.get("sharding", {}).get("rules", DEFAULT_RULES)
  return tuple((str(k), None if v in (None, "None", "") else v) for k, v in rules)
