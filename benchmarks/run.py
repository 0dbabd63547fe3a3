"""Benchmark runner: runs every `benchmarks/bench_*.py`, stores JSON, rewrites BENCHMARKS.md.

Each bench module exposes `run(quick: bool) -> list[dict]`; a row has
  figure            what is measured, e.g. "haze pairs/s, 256², batch 32"
  ours, peer        the two measurements, same unit, same run
  peer_name         what the peer is (library and version)
  unit              e.g. "pairs/s"
  higher_is_better  bool (ratio is ours/peer when True, peer/ours otherwise)
  target            optional minimum ratio the project aims for
  notes             optional
Usage: python -m benchmarks.run [--only NAME ...] [--quick]
"""
import argparse
import importlib
import json
import os
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def machine_description():
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
  return f"{dev.platform}:{dev.device_kind}; {os.cpu_count()} cores {cpu}; jax {jax.__version__}"


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
      "in each row. Rows are never edited by hand.",
      "",
      "| figure | jaxdeg | peer | peer is | ratio | target | machine | command | date |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    rt = ratio(r)
    ok = "" if r.get("target") is None or rt is None else (" ✓" if rt >= r["target"] else " ✗ below target")
    target = "" if r.get("target") is None else f"≥ {r['target']}×"  # Python 3.11: no nested same quotes
    lines.append(
        f"| {r['figure']} | {r['ours']:.4g} {r['unit']} | {r['peer']:.4g} {r['unit']} | {r['peer_name']} "
        f"| {'' if rt is None else f'{rt:.2f}×'}{ok} | {target} "
        f"| {r['machine']} | `{r['command']}` | {r['date']} |")
    if r.get("notes"):
      lines.append(f"| ↳ {r['notes']} | | | | | | | | |")
  (ROOT.parent / "BENCHMARKS.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
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
  machine = machine_description()
  for name in names:
    mod = importlib.import_module(f"benchmarks.bench_{name}")
    command = f"python -m benchmarks.run --only {name}" + (" --quick" if args.quick else "")
    print(f"== {name}", flush=True)
    rows = mod.run(quick=args.quick)
    for r in rows:
      r.setdefault("machine", machine)
      r["command"] = command
      r["date"] = time.strftime("%Y-%m-%d")
      rt = ratio(r)
      print(f"  {r['figure']}: ours {r['ours']:.4g} vs {r['peer_name']} {r['peer']:.4g} {r['unit']}"
            f" -> {'n/a' if rt is None else f'{rt:.2f}x'}", flush=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
  write_markdown()


if __name__ == "__main__":
  main()
