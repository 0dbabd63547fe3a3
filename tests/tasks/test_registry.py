"""The task registry names exactly the modules that define a trainable TASK."""
import importlib
import pkgutil

import jaxdeg.tasks as tasks
from jaxdeg.tasks.base import Task


def test_registry_lists_exactly_the_modules_with_a_task():
  with_task = set()
  for module in pkgutil.iter_modules(tasks.__path__):
    m = importlib.import_module(f"jaxdeg.tasks.{module.name}")
    if hasattr(m, "TASK"):
      assert issubclass(m.TASK, Task), module.name
      with_task.add(module.name)
  assert with_task == set(tasks.available())
