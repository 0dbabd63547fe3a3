"""`--mode=compile`: size a config for a mesh before renting it (per-device memory, FLOPs)."""
import json
import os
import time

import jax
import numpy as np
from absl import logging

from jaxdeg.train.trainer import Setup, ensure_workdir


def compile_report(config, workdir=None):
  """Lowers and compiles the train step for the configured mesh without running it.

  Reports per-device memory (arguments, outputs, temporaries, code) and FLOPs per step, so a
  config can be sized before renting accelerators. Written to workdir/compile_report.json.
  """
  setup = Setup(config)
  local = next(iter(setup.task.train_data()))
  batch = {k: jax.ShapeDtypeStruct((v.shape[0] * jax.process_count(),) + v.shape[1:], v.dtype,
                                   sharding=setup.batch_sharding) for k, v in local.items()}
  t0 = time.monotonic()
  compiled = setup.train_step.lower(setup.abstract_state, batch).compile()
  report = {"mesh": dict(setup.mesh.shape), "devices": jax.device_count(),
            "device_kind": jax.devices()[0].device_kind, "compile_seconds": time.monotonic() - t0,
            "global_batch": {k: list(v.shape) for k, v in batch.items()}}
  mem = compiled.memory_analysis()
  if mem is not None:
    for field in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                  "generated_code_size_in_bytes", "alias_size_in_bytes"):
      report[f"per_device_{field.replace('_in_bytes', '_bytes')}"] = int(getattr(mem, field, 0))
    report["per_device_peak_estimate_bytes"] = (report["per_device_argument_size_bytes"]
                                                + report["per_device_output_size_bytes"]
                                                + report["per_device_temp_size_bytes"]
                                                - report["per_device_alias_size_bytes"])
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  if cost:
    report["per_device_flops_per_step"] = float(cost.get("flops", 0.0))
    report["per_device_bytes_accessed_per_step"] = float(cost.get("bytes accessed", 0.0))
  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract_state.params))
  report["parameters"] = params
  for k, v in report.items():
    logging.info("compile: %s = %s", k, f"{v / 2**20:.1f} MiB" if k.endswith("_bytes") else v)
  if workdir and jax.process_index() == 0:
    with open(os.path.join(ensure_workdir(workdir), "compile_report.json"), "w") as f:
      json.dump(report, f, indent=1)
  return report
