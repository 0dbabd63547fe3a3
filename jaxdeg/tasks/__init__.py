"""One module per trainable thing; `config.task` names it. The trainer calls `get(config)`."""
import importlib

from jaxdeg.errors import ConfigError
from jaxdeg.tasks.base import Task


# The modules that define a trainable `TASK` (the package's other modules are what they share).
TASKS = ("cdd", "ldm", "restore", "structure", "vae")


def available() -> list[str]:
  return list(TASKS)


def get(config) -> Task:
  """Instantiates the task named by `config.task` (module jaxdeg/tasks/<name>.py, class `TASK`)."""
  name = config.get("task")
  if name not in available():
    raise ConfigError(f"config.task={name!r} is not a jaxdeg task; available: {', '.join(available())}")
  module = importlib.import_module(f"{__name__}.{name}")
  return module.TASK(config)
