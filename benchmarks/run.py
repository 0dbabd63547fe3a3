"""Benchmark runner: runs every `benchmarks/bench_*.py`, stores JSON, rewrites BENCHMARKS.md.

Each bench module exposes `run(quick: bool) -> list[dict]`; a row has
  figure            what is measured, e.g. "haze pairs/s, 256², batch 32"
  ours, peer        the two measurements, same unit, same run
  peer_name         what the peer is (library and version)
  unit              e.g. "pairs/s"
  higher_is_better  bool (ratio is ours/peer when True, peer/ours otherwise)
  target            optional minimum ratio the project aims for
  notes             optional
  ours_range, peer_range, reps   optional spread of the repetitions (benchmarks/timing.py)
The runner adds the machine (CPU model, cores), and how busy it was while the module ran: the
1-minute load average and the CPU time of processes other than the benchmark's own.
Usage: python -m benchmarks.run [--only NAME ...] [--quick]
"""
import argparse
import importlib
import json
import os
import pathlib
import platform
import sys
import threading
import time

from benchmarks import timing
from jaxdeg import host_memory

ROOT = pathlib.Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def machine_description(reused_memory=False):
  import jax
  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  malloc = "; glibc malloc reusing freed memory (jaxdeg.host_memory)" if reused_memory else ""
  return f"{dev.platform}:{dev.device_kind}; {os.cpu_count()} cores {cpu}; jax {jax.__version__}{malloc}"


LOADED_CORES = 0.25  # other processes using more than this, on average, mark a row as from a loaded machine


class Conditions:
  """How busy the machine was while a bench module ran: CPU used by other processes (all CPU time in
  /proc/stat minus this process and its waited-for children) and the highest 1-minute load average."""

  def __enter__(self):
    self.start = (time.monotonic(), _busy_seconds(), _own_seconds())
    self.load = [os.getloadavg()[0]]
    self.done = threading.Event()
    self.sampler = threading.Thread(target=self._sample, daemon=True)
    self.sampler.start()
    return self

  def _sample(self):
    while not self.done.wait(5.0):
      self.load.append(os.getloadavg()[0])

  def __exit__(self, *exc):
    self.done.set()
    self.sampler.join()
    self.load.append(os.getloadavg()[0])
    wall, busy, own = (b - a for a, b in zip(self.start, (time.monotonic(), _busy_seconds(), _own_seconds())))
    self.own_cores = own / max(wall, 1e-9)
    self.other_cores = None if busy is None else max(0.0, (busy - own) / max(wall, 1e-9))

  def fields(self):
    return {"load_avg": round(max(self.load), 2),
            "other_cores": None if self.other_cores is None else round(self.other_cores, 2)}


def _busy_seconds():
  used = timing.machine_cpu_seconds()
  return None if used is None else used[0]


def _own_seconds():
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def conditions_text(row):
  """'idle' or 'LOADED' with the numbers behind it; rows from before conditions were recorded say so."""
  if "load_avg" not in row:
    return "load not recorded"
  others = row.get("other_cores")
  if others is None:
    return f"load avg ≤ {row['load_avg']}"
  state = "LOADED" if others > LOADED_CORES else "idle"
  return f"{state}: other processes {others:.2f} cores, load avg ≤ {row['load_avg']}"


def measured(row, side):
  """'0.093 images/s (0.090–0.095, 6 reps)': the median with the spread of its repetitions."""
  value = row[side]
  if value is None:
    return "—"
  spread = row.get(f"{side}_range")
  if not spread:
    return f"{value:.4g} {row['unit']}"
  return f"{value:.4g} {row['unit']} ({spread[0]:.4g}–{spread[1]:.4g}, {row['reps']} reps)"


def ratio(row):
  if not row.get("peer") or not row.get("ours"):
    return None
  return row["ours"] / row["peer"] if row.get("higher_is_better", True) else row["peer"] / row["ours"]


def write_markdown():
  rows = []
  for path in sorted(RESULTS.glob("*.json")):
    rows.extend(json.loads(path.read_text()))
  lines = [
      "# Benchmarks",
      "",
      "Measured side by side with the peer in the same run. Ratio > 1 means jaxdeg is better",
      "(faster, or smaller where lower is better). Regenerate with `make bench` or the command",
      "in each row. Rows are never edited by hand. Each side is the median of interleaved",
      "repetitions, with their slowest–fastest range; `machine` names the CPU and says how busy the",
      f"machine was while the row was measured (LOADED when other processes used > {LOADED_CORES} cores).",
      "",
      "| figure | jaxdeg | peer | peer is | ratio | target | machine | command | date |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    rt = ratio(r)
    ok = "" if r.get("target") is None or rt is None else (" ✓" if rt >= r["target"] else " ✗ below target")
    target = "" if r.get("target") is None else f"≥ {r['target']}×"  # Python 3.11: no nested same quotes
    lines.append(
        f"| {r['figure']} | {measured(r, 'ours')} | {measured(r, 'peer')} | {r['peer_name']} "
        f"| {'' if rt is None else f'{rt:.2f}×'}{ok} | {target} "
        f"| {r['machine']}; {conditions_text(r)} | `{r['command']}` | {r['date']} |")
    if r.get("notes"):
      lines.append(f"| ↳ {r['notes']} | | | | | | | | |")
  (ROOT.parent / "BENCHMARKS.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
  # both sides run in this process, so both get it (PyTorch's own page faults drop too)
  reused_memory = host_memory.reuse_freed_memory()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--only", nargs="*", help="bench module names without the bench_ prefix")
  p.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
  args = p.parse_args(argv)
  RESULTS.mkdir(exist_ok=True)
  names = sorted(m.stem[len("bench_"):] for m in ROOT.glob("bench_*.py"))
  if args.only:
    unknown = set(args.only) - set(names)
    if unknown:
      sys.exit(f"error: unknown benchmark(s) {sorted(unknown)}; available: {names}")
    names = args.only
  machine = machine_description(reused_memory)
  for name in names:
    mod = importlib.import_module(f"benchmarks.bench_{name}")
    # the command that produced the row: a whole run (`make bench`) is recorded as such
    command = "python -m benchmarks.run" + (f" --only {name}" if args.only else "") + (" --quick" if args.quick else "")
    print(f"== {name}", flush=True)
    with Conditions() as conditions:
      rows = mod.run(quick=args.quick)
    for r in rows:
      r.setdefault("machine", machine)
      r.update(conditions.fields())
      r["command"] = command
      r["date"] = time.strftime("%Y-%m-%d")
      rt = ratio(r)
      print(f"  {r['figure']}: ours {measured(r, 'ours')} vs {r['peer_name']} {measured(r, 'peer')}"
            f" -> {'n/a' if rt is None else f'{rt:.2f}x'}; {conditions_text(r)}", flush=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
  write_markdown()


if __name__ == "__main__":
  main()
