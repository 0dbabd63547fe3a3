"""Device mesh from `config.mesh`: axes ('data', 'fsdp'); -1 fills with the remaining devices."""
import math

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxdeg.errors import ConfigError

MESH_AXES = ("data", "fsdp")
# The batch is split over every mesh axis; parameters only over 'fsdp' (by logical rules).
BATCH_AXES = MESH_AXES


def make_mesh(mesh_config) -> Mesh:
  """Builds the mesh; `mesh_config.num_devices` (-1 = all) picks the first N devices."""
  devices = jax.devices()
  n = mesh_config.get("num_devices", -1)
  if n not in (-1, None):
    if not 1 <= n <= len(devices):
      raise ConfigError(f"config.mesh.num_devices={n}: must be -1 or in 1..{len(devices)} "
                        f"({len(devices)} {devices[0].platform} devices visible)")
    devices = devices[:n]
  sizes = []
  for axis in MESH_AXES:
    size = mesh_config.get(axis, 1)
    if not isinstance(size, int) or (size < 1 and size != -1):
      raise ConfigError(f"config.mesh.{axis}={size!r}: must be a positive integer or -1 (fill)")
    sizes.append(size)
  if sizes.count(-1) > 1:
    raise ConfigError(f"config.mesh: only one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
  fixed = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % fixed:
      raise ConfigError(f"config.mesh={dict(zip(MESH_AXES, sizes))}: {len(devices)} devices are not "
                        f"divisible by the fixed axes' product {fixed}")
    sizes[sizes.index(-1)] = len(devices) // fixed
  if math.prod(sizes) != len(devices):
    raise ConfigError(f"config.mesh={dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                      f"but {len(devices)} are in use; set the axes so their product is {len(devices)}")
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over all mesh axes, the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_divisor(mesh: Mesh) -> int:
  """How many ways the global batch is split: it must be a multiple of this."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES)
