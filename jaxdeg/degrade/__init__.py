"""Procedural degradations: pure jnp functions, one file per family, and a registry.

Importing this package imports every family module in it, so each registers itself.
"""
import importlib
import pkgutil

from jaxdeg.degrade.registry import apply, apply_spec, available, get, parse_spec, register

for _m in pkgutil.iter_modules(__path__):
  if _m.name not in ("registry", "cli") and not _m.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["apply", "apply_spec", "available", "get", "parse_spec", "register"]
