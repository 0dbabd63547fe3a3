"""Test-wide setup: 8 fake CPU devices so sharding is exercised without accelerators."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ["XLA_FLAGS"] = os.environ["XLA_FLAGS"].replace(
    "--xla_force_host_platform_device_count=1", "--xla_force_host_platform_device_count=8")
# The tests' models are tiny, so XLA:CPU's compile time, not run time, is most of the suite: LLVM's
# backend at -O0 halves it (75 s -> 41 s of compiles for tests/tasks/gendeg/test_patch_gan.py); the
# numerics are XLA's own either way (fusion and layout passes still run).
if "--xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent compilation cache for the test processes and the subprocesses they start: the
# same tiny configs are compiled by many tests, and XLA:CPU compiles dominate the suite's time.
import tempfile  # noqa: E402

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxdeg-test-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


# glibc's default malloc, also where tests call the command-line entry points in this process
# (jaxdeg.host_memory would set one arena for all threads: the suite is XLA compiles, many threads).
os.environ.setdefault("JAXDEG_HOST_MALLOC", "default")

SERIAL_FILES = ("tests/train/test_multiprocess.py",)  # the Makefile's SERIAL_TESTS


def pytest_collection_modifyitems(config, items):
  """`make test` runs `serial` tests only from SERIAL_FILES: one elsewhere would never run."""
  import pytest
  for item in items:
    if item.get_closest_marker("serial") and item.nodeid.split("::")[0] not in SERIAL_FILES:
      raise pytest.UsageError(f"{item.nodeid} is marked serial but is not in SERIAL_FILES (tests/conftest.py) "
                              "and the Makefile's SERIAL_TESTS")
