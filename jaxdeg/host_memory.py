"""Host memory that is reused instead of faulted in again: glibc malloc told to keep freed blocks.

XLA:CPU allocates each call's temporary buffers on its own threads and frees them when the call
ends. glibc serves such large blocks with fresh mmap()s (always, from a thread's arena) and unmaps
them on free, so every train step faults its whole working set in again: 1.6 GB of page faults per
NAFNet-16 step at 128², batch 8, a third of the step's CPU time on a 2-core VM. With one arena, no
mmap and no trimming (mallopt(3)), a freed block is handed out again by the next step instead; the
process keeps the memory of its largest step, as a training process does anyway.

The cost: one arena serialises every thread's malloc, and XLA's compiler allocates from many
threads (the test suite, which is mostly compilation, ran 10:50 → 13:59 with it). So the trainer's
entry point (jaxdeg.main) and the benchmarks use it, where compilation is paid once and steps
repeat; the short image commands of `jaxdeg` do not.

Arenas are chosen per thread at its first allocation, so this must run before JAX starts its
threads. JAXDEG_HOST_MALLOC=default leaves glibc as it is.
"""
import ctypes
import os
import sys

ENV = "JAXDEG_HOST_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's <malloc.h>


def reuse_freed_memory() -> bool:
  """Applies the settings above to this process; False where it cannot (not glibc, or opted out)."""
  if os.environ.get(ENV, "") == "default" or not sys.platform.startswith("linux"):
    return False
  try:
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
  except (OSError, AttributeError):  # a libc without mallopt (musl)
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  # -1 disables trimming (mallopt(3)); each call returns 1 on success
  return all(mallopt(option, value) == 1
             for option, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
