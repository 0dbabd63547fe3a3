"""Waiting for training batches without hanging.

grain drops skipped records (None) and keeps reading, so data where no record can ever be used
(every file fails to decode, a crop larger than every image) would be read forever. `Watched` wraps
a training iterator: each batch is fetched by a helper thread while the caller polls, and
  * once every record of every source has been skipped at least once (skips.py counts them per
    record, in every worker process) with no batch formed, it raises DataError naming the sources
    and the skip counts. Skips are deterministic (decoding, sizes and values do not change), so
    this is exact: some record usable means some batch comes;
  * a stop request (`request_stop()`, from the trainer's SIGTERM handler) ends a wait that has
    lasted GRACE_S with `Interrupted`: a preempted run stuck on slow data still exits. A batch that
    comes within GRACE_S is delivered, so the usual preemption path (finish the step, save) holds.
After either error the iterator is closed (which ends the helper thread's reading).

grain's own `filter_raise_threshold_ratio` is a ratio over windows of 1000 elements: it cannot tell
"no record is usable" from "few are", so it is not used.
"""
import threading
import time

import grain

from jaxdeg.data import skips
from jaxdeg.errors import DataError

POLL_S = 0.25
GRACE_S = 5.0
_stop = threading.Event()


class Interrupted(Exception):
  """A stop was requested while no batch came."""


def request_stop():
  """Ends the current and later waits that last GRACE_S (safe to call from a signal handler)."""
  _stop.set()


def clear_stop():
  _stop.clear()


class Watched(grain.IterDataset):
  """`parent` (an IterDataset of batches), raising instead of hanging; checkpointed as the parent."""

  def __init__(self, parent, inputs, skip_dir):
    super().__init__(parent)
    self._records = sum(len(inp.source) for inp in inputs)
    self._what = ", ".join(repr(inp.source) for inp in inputs)
    self._skip_dir = skip_dir

  def __iter__(self):
    return _WatchedIterator(self._parent.__iter__(), self)

  def hopeless_error(self):
    """DataError when every record has been skipped (nothing can form a batch), else None."""
    if skips.skipped_records(self._skip_dir) < self._records:
      return None
    counts = ", ".join(f"{r}: {n}" for r, n in skips.summary()["by_reason"].items())
    return DataError(f"no training batch can be formed: all {self._records} records of {self._what} were "
                     f"tried and skipped ({counts}); see data_skips.json in the workdir")


class _WatchedIterator(grain.DatasetIterator):

  def __init__(self, parent, watched):
    super().__init__(parent)
    self._watched = watched

  def __next__(self):
    box, done = {}, threading.Event()

    def fetch():
      try:
        box["batch"] = next(self._parent)
      except BaseException as e:  # handed to the caller's thread
        box["error"] = e
      done.set()

    threading.Thread(target=fetch, name="jaxdeg-next-batch", daemon=True).start()
    start = time.monotonic()
    while not done.wait(POLL_S):
      error = self._watched.hopeless_error()
      if error is None and _stop.is_set() and time.monotonic() - start >= GRACE_S:
        error = Interrupted(f"stop requested while waiting {time.monotonic() - start:.0f} s for a batch")
      if error is not None:
        self._parent.close()  # stops the reading that will never deliver
        raise error
    if "error" in box:
      raise box["error"]
    return box["batch"]

  def get_state(self):
    return self._parent.get_state()

  def set_state(self, state):
    self._parent.set_state(state)
