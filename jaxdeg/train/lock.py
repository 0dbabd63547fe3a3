"""One training run per workdir: a lock file naming its owner (host, pid), taken at start.

Two runs writing one workdir interleave checkpoints and eval history (or crash inside tensorstore),
so the second stops with one line. The file is created atomically (O_EXCL, which also holds on
NFS v3+), removed when the run ends however it ends, and a stale one (its process on this host is
gone, e.g. after kill -9) is replaced with a warning. A lock from another host cannot be checked:
the message says which file to delete if that run is dead. In a multi-process run only process 0
takes it (the workdir is shared); the others are the same run.
"""
import contextlib
import json
import os
import socket
import time

import jax
from absl import logging

from jaxdeg.errors import UserError

LOCK_FILE = ".jaxdeg-train.lock"


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's live process
    return True
  return True


def _owner(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}  # half-written or unreadable: treated as stale below only if old


def _take(path, me):
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    json.dump(me, f)
  return True


def _stale(owner, path):
  if not owner:  # unreadable: a writer died between create and write, unless it is doing so right now
    return time.time() - os.path.getmtime(path) > 60
  same_host = owner.get("host") == socket.gethostname()
  return same_host and (owner.get("pid") == os.getpid() or not _alive(int(owner.get("pid", -1))))


@contextlib.contextmanager
def held(workdir):
  """Holds the workdir's lock for the block; UserError if another live run holds it."""
  if jax.process_index() != 0:
    yield
    return
  path = os.path.join(workdir, LOCK_FILE)
  me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
  if not _take(path, me):
    owner = _owner(path)
    if not _stale(owner, path):
      who = f"process {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}" if owner else "another run"
      raise UserError(f"--workdir={workdir} is in use by {who}: one training run per workdir (if that run is "
                      f"dead, delete {path})")
    logging.warning("replacing the stale lock of a run that is gone (%s)", owner or path)
    os.remove(path)
    if not _take(path, me):
      raise UserError(f"--workdir={workdir}: another run took its lock {path} just now")
  try:
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
