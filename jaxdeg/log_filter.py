"""What a run prints by default: jaxdeg's own lines, the metrics and the progress line, and every
warning; not the INFO records of the libraries underneath (orbax's checkpoint internals, XLA's
backend probing, clu's parameter table), which `--verbose` brings back."""
import logging
import os

from absl import logging as absl_logging

_JAXDEG = os.path.dirname(os.path.abspath(__file__)) + os.sep
# clu files whose INFO records are the run's own output: metric scalars and the steps/s + ETA line
_KEPT = ("clu/metric_writers/logging_writer.py", "clu/periodic_actions.py", "clu/platform/local.py")
# warnings that say only what jaxdeg asked for: orbax's notes on a manager opened read-only (evaluate,
# restore, transfer read checkpoints that way on purpose)
_EXPECTED_WARNINGS = (("orbax/checkpoint/checkpoint_manager.py", ("CheckpointManagerOptions.read_only=True",
                                                                  "Given directory is read only")),)


class LibraryInfoFilter(logging.Filter):
  """Passes WARNING and above (but the expected ones above), and INFO from jaxdeg's files and the clu
  outputs above."""

  def filter(self, record):
    path = os.path.abspath(record.pathname)
    posix = path.replace(os.sep, "/")
    if record.levelno >= logging.WARNING:
      return not any(posix.endswith(f) and record.getMessage().startswith(starts) for f, starts in _EXPECTED_WARNINGS)
    return path.startswith(_JAXDEG) or posix.endswith(_KEPT)


def install(verbose=False):
  """Filters absl's handler (every absl and orbax record goes through it) unless `verbose`."""
  if verbose:
    return
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(LibraryInfoFilter())
