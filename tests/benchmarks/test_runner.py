"""The benchmark runner's bookkeeping: medians with their spread, and rows from a busy machine marked."""
import os
import subprocess
import sys
import time

import pytest

from benchmarks import run, timing


def test_the_figure_is_the_median_and_the_spread_is_slowest_to_fastest():
  row = {"unit": "images/s", **timing.figures(8, [2.0, 1.0, 4.0], [1.0, 1.0, 0.5])}
  assert row["ours"] == 4.0 and row["ours_range"] == [2.0, 8.0] and row["reps"] == 3
  assert row["peer"] == 8.0 and row["peer_range"] == [8.0, 16.0]
  assert run.ratio(dict(row, higher_is_better=True)) == 0.5
  assert run.measured(row, "ours") == "4 images/s (2–8, 3 reps)"
  assert timing.figures(8, [1.0], None)["peer"] is None


def test_turns_alternate_between_the_two_sides():
  calls = []
  t_ours, t_peer = timing.interleaved(lambda: calls.append("ours"), lambda: calls.append("peer"), reps=3)
  assert calls == ["ours", "peer"] * 3 and len(t_ours) == len(t_peer) == 3
  assert timing.interleaved(lambda: None, None, reps=2)[1] is None


def test_a_process_spinning_beside_the_benchmark_marks_its_rows_loaded():
  spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
  try:
    time.sleep(0.5)  # the interpreter is up and spinning
    with run.Conditions() as conditions:
      time.sleep(2.0)  # the benchmark itself idles: all busy time is the spinner's
  finally:
    spinner.kill()
    spinner.wait()
  fields = conditions.fields()
  if fields["other_cores"] is None:
    pytest.skip("no /proc/stat on this system")
  assert fields["other_cores"] >= 0.5, fields
  assert run.conditions_text(fields).startswith("LOADED: other processes"), run.conditions_text(fields)


def test_the_benchmarks_own_work_and_its_child_processes_are_not_counted_as_load():
  spin = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass\nprint(time.process_time())"
  with run.Conditions() as busy:
    start = time.monotonic()
    # a pinned child, as bench_degrade measures, and the same work in this process
    child_cpu = float(subprocess.run([sys.executable, "-c", spin], capture_output=True, text=True,
                                     check=True).stdout)
    own_cpu = time.process_time()
    exec(compile(spin.replace("print(time.process_time())", ""), "spin", "exec"), {})
    own_cpu = time.process_time() - own_cpu
    wall = time.monotonic() - start
  if busy.fields()["other_cores"] is None:
    pytest.skip("no /proc/stat on this system")
  # both are the benchmark's own CPU time, which is taken out of the machine's busy time
  assert busy.own_cores * wall >= 0.9 * (child_cpu + own_cpu), (busy.own_cores * wall, child_cpu, own_cpu)
  assert run.conditions_text({"load_avg": 0.1}) == "load avg ≤ 0.1"
  assert run.conditions_text({}) == "load not recorded"


def test_machine_cpu_seconds_sees_this_process_kernel_time():
  # Fresh pages are kernel work (the data row's kernel share): touching 256 MiB of new anonymous
  # memory must show in the machine's kernel seconds at least as much as in this process's own.
  import mmap
  before, own_before = timing.machine_cpu_seconds(), os.times()
  if before is None:
    pytest.skip("no /proc/stat on this system")
  for _ in range(4):
    with mmap.mmap(-1, 64 << 20) as m:
      for i in range(0, len(m), 4096):
        m[i] = 1
  after, own_after = timing.machine_cpu_seconds(), os.times()
  tick = 1.0 / os.sysconf("SC_CLK_TCK")
  own_kernel, own_all = own_after.system - own_before.system, sum(own_after[:2]) - sum(own_before[:2])
  assert own_kernel > 0.02, own_kernel  # the page faults took kernel time
  assert after[1] - before[1] >= own_kernel - 2 * tick, (after, before, own_kernel)
  assert after[0] - before[0] >= own_all - 2 * tick, (after, before, own_all)
  assert after[0] - before[0] >= after[1] - before[1]


def test_flops_are_xlas_count_of_the_call():
  import jax
  import jax.numpy as jnp
  # (4 × 8) @ (8 × 2): 4·2 outputs, each 8 multiplies and 8 adds
  assert timing.xla_flops(jax.jit(jnp.matmul), jnp.ones((4, 8)), jnp.ones((8, 2))) == 2 * 4 * 8 * 2
