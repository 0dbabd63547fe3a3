"""One module per trainable thing; `config.task` names it. The trainer calls `get(config)`."""
import importlib
import pkgutil

from jaxdeg.errors import ConfigError
from jaxdeg.tasks.base import Task


def available() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))


def get(config) -> Task:
  """Instantiates the task named by `config.task` (module jaxdeg/tasks/<name>.py, class `TASK`)."""
  name = config.get("task")
  if name not in available():
    raise ConfigError(f"config.task={name!r} is not a jaxdeg task; available: {', '.join(available())}")
  module = importlib.import_module(f"{__name__}.{name}")
  return module.TASK(config)
