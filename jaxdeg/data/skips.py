"""Skipped records: counted by reason, each path logged once, summarised into the workdir.

Records are rejected in two places:
  * when a source is built (main process): listing and a cheap header check (`verify`), so most
    bad files never enter the pipeline; these are kept in memory;
  * when a record is decoded (any process, including `mp_prefetch` workers): truncated data and
    anything the header check cannot see. Each process appends these to its own file
    `skips-<pid>.jsonl` in a directory chosen by the main process (the transforms carry its path
    to the workers), so the counts survive the worker processes.

`summary()` merges both and counts each (reason, path) once, however many epochs hit it.
Decode-time lines also name the record (input index and record name): `skipped_records()` counts
the distinct records skipped, which tells waiting.py when no record is usable at all.
The trainer calls `write_skip_summary(workdir)` at checkpoints and at the end.
"""
import atexit
import json
import os
import shutil
import tempfile

import jax
from absl import logging

from jaxdeg.errors import ConfigError, DataError

ON_ERROR = ("skip", "raise")
REASONS = {
    "empty_file": "zero-byte file",
    "not_an_image": "not an image Pillow can read",
    "corrupt": "corrupt image data",
    "truncated": "truncated image file",
    "unreadable": "cannot be read",
    "missing_partner": "has no partner image",
    "size_mismatch": "pair images differ in size",
    "too_small": "smaller than the crop",
    "too_large": "more pixels than the cap (a decompression bomb?)",
    "non_finite": "float image with NaN or infinite values",
    "out_of_range": "float image with values outside [0, 1]",
    "bad_record": "malformed record",
}
SUMMARY_FILE = "data_skips.json"
_MAX_LISTED = 1000  # paths listed in the summary; the counts are always complete


class BadRecord(DataError):
  """One record cannot be used: `path`, a `reason` from REASONS and a `detail`."""

  def __init__(self, path, reason, detail=""):
    self.path, self.reason, self.detail = str(path), reason, str(detail)
    text = REASONS.get(reason, reason)
    super().__init__(f"{path}: {text}" + (f" ({detail})" if detail else ""))


def check_on_error(value):
  if value not in ON_ERROR:
    raise ConfigError(f"config.data.on_error={value!r}: must be one of {', '.join(ON_ERROR)}")
  return value


_state = {"dir": None, "owner": None, "prescan": {}, "seen": set(), "records": set()}


def skip_dir() -> str:
  """This run's directory of per-process skip files (created by the main process, once)."""
  if _state["dir"] is None or _state["owner"] != os.getpid():
    _state["dir"] = tempfile.mkdtemp(prefix="jaxdeg-skips-")
    _state["owner"] = os.getpid()
    atexit.register(shutil.rmtree, _state["dir"], True)
  return _state["dir"]


def reset():
  """Forgets every skip recorded so far (a fresh directory for the next pipelines)."""
  _state.update(dir=None, owner=None, prescan={}, seen=set(), records=set())


def _log_once(err):
  key = (err.reason, err.path)
  if key in _state["seen"]:
    return False
  _state["seen"].add(key)
  logging.warning("skipped %s", err)
  return True


def record_prescan(err: BadRecord, on_error: str):
  """A record rejected while building a source (main process)."""
  if on_error == "raise":
    raise err
  if _log_once(err):
    _state["prescan"][(err.reason, err.path)] = err.detail


def record_decode(err: BadRecord, on_error: str, directory: str, record=None):
  """A record rejected while decoding, in whatever process runs the transform; `record` names the
  record (several records may share a bad file, e.g. one clean image of many hazy ones)."""
  if on_error == "raise":
    raise err
  new_record = record is not None and record not in _state["records"]
  if new_record:
    _state["records"].add(record)
  if _log_once(err) or new_record:
    line = json.dumps({"reason": err.reason, "path": err.path, "detail": err.detail, "record": record})
    with open(os.path.join(directory, f"skips-{os.getpid()}.jsonl"), "a") as f:
      f.write(line + "\n")


def _decode_lines(directory):
  if directory and os.path.isdir(directory):
    for name in sorted(os.listdir(directory)):
      with open(os.path.join(directory, name)) as f:
        for line in f:
          try:
            yield json.loads(line)
          except ValueError:  # blank, or a line a worker is still writing
            continue


def _decode_skips(directory):
  found = {}
  for rec in _decode_lines(directory):
    found.setdefault((rec["reason"], rec["path"]), rec["detail"])
  return found


def skipped_records(directory=None) -> int:
  """How many distinct records were skipped while decoding, in every process of this run."""
  return len({rec["record"] for rec in _decode_lines(directory or _state["dir"]) if rec.get("record")})


def summary() -> dict:
  """{'total', 'by_reason': {reason: n}, 'records': [{'reason', 'path', 'detail'}, ...]}."""
  found = dict(_decode_skips(_state["dir"]))
  found.update(_state["prescan"])
  by_reason = {}
  for reason, _ in found:
    by_reason[reason] = by_reason.get(reason, 0) + 1
  records = [{"reason": r, "path": p, "detail": d} for (r, p), d in sorted(found.items())]
  return {"total": len(found), "by_reason": dict(sorted(by_reason.items())), "records": records[:_MAX_LISTED]}


def write_skip_summary(workdir) -> dict:
  """Writes `data_skips.json` (process i of several: `data_skips.p<i>.json`) and returns it."""
  result = summary()
  name = SUMMARY_FILE if jax.process_count() == 1 else f"data_skips.p{jax.process_index()}.json"
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, name), "w") as f:
    json.dump(result, f, indent=1)
  if result["total"]:
    logging.warning("data: %d records skipped so far %s; see %s", result["total"], result["by_reason"],
                    os.path.join(workdir, name))
  return result
