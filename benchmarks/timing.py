"""How every side-by-side figure is timed: the two sides in turns, the median and the spread.

Interleaving (ours, peer, ours, peer, ...) exposes both sides to the same machine load; the median
is the figure, the min–max of the repetitions is stored beside it so a noisy row shows as noisy.
"""
import time

import numpy as np


def seconds(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def interleaved(ours, peer, reps):
  """Seconds per call of each side over `reps` turns; the peer's list is None when there is none."""
  t_ours, t_peer = [], []
  for _ in range(reps):
    t_ours.append(seconds(ours))
    if peer is not None:
      t_peer.append(seconds(peer))
  return t_ours, (t_peer if peer is not None else None)


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
