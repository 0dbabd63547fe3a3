"""What a run prints by default: jaxdeg's INFO and every warning, but not the libraries' INFO nor
orbax's notes on a manager jaxdeg opened read-only on purpose."""
import logging
import os

import jaxdeg
from jaxdeg.log_filter import LibraryInfoFilter

ORBAX = "/venv/lib/python3.11/site-packages/orbax/checkpoint/checkpoint_manager.py"


def _passes(level, path, message):
  record = logging.LogRecord("absl", level, path, 1, message, (), None)
  return LibraryInfoFilter().filter(record)


def test_library_info_and_read_only_notes_are_hidden_everything_else_shown():
  own = os.path.join(os.path.dirname(jaxdeg.__file__), "train", "trainer.py")
  assert _passes(logging.INFO, own, "resumed from step 10")
  assert not _passes(logging.INFO, ORBAX, "Saving checkpoint at step 10")
  assert not _passes(logging.WARNING, ORBAX, "CheckpointManagerOptions.read_only=True, setting max_to_keep=None.")
  assert not _passes(logging.WARNING, ORBAX, "Given directory is read only=/tmp/w/checkpoints")
  assert _passes(logging.WARNING, ORBAX, "Checkpoint at step 10 is incomplete")
  assert _passes(logging.ERROR, "/somewhere/else.py", "anything")
