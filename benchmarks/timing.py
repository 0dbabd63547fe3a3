"""How every side-by-side figure is timed: the two sides in turns, the median and the spread.

Interleaving (ours, peer, ours, peer, ...) exposes both sides to the same machine load; the median
is the figure, the min–max of the repetitions is stored beside it so a noisy row shows as noisy.
"""
import os
import time

import numpy as np


def seconds(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def interleaved(*sides, reps):
  """Seconds per call of each side over `reps` turns (a, b, ..., a, b, ...); None for a side that
  is None (no peer)."""
  times = [None if fn is None else [] for fn in sides]
  for _ in range(reps):
    for fn, out in zip(sides, times):
      if fn is not None:
        out.append(seconds(fn))
  return tuple(times)


def machine_cpu_seconds():
  """(all, kernel) CPU seconds the whole machine has used since boot (/proc/stat), None off Linux."""
  try:
    with open("/proc/stat") as f:
      user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
  except (OSError, ValueError):
    return None
  tick = os.sysconf("SC_CLK_TCK")
  return (user + nice + system + irq + softirq + steal) / tick, (system + irq + softirq) / tick


def xla_flops(jitted, *args):
  """XLA's FLOP count of one call of `jitted` on `args` (its cost analysis), None where unknown."""
  cost = jitted.lower(*args).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"]) if cost and "flops" in cost else None


def rates(count, times):
  """`count` items per call → (median rate, [slowest, fastest] rate)."""
  if not times:
    return None, None
  return count / float(np.median(times)), [count / max(times), count / min(times)]


def figures(count, t_ours, t_peer):
  """The row fields of two timed sides: medians as `ours`/`peer`, spreads and repetitions beside them."""
  ours, ours_range = rates(count, t_ours)
  peer, peer_range = rates(count, t_peer)
  return {"ours": ours, "ours_range": ours_range, "peer": peer, "peer_range": peer_range, "reps": len(t_ours)}
