"""The synthetic-vs-procedural experiment (configs/experiments/synthetic_vs_procedural.py), end to end:

  python docs/make_synthetic_vs_procedural.py --cdd-workdir /tmp/cdd_cpu [--workdir /tmp/svp]

1. References: a few crops of the training photos degraded by the held-out generator (Real-ESRGAN),
   standing in for the handful of unpaired "real" degraded images a user has.
2. Learned pairs: the trained universal degradation model (`--cdd-workdir`, e.g. the run of
   docs/make_cdd_cpu_run.py) puts each reference's degradation on clean crops of *other* training
   photos (`jaxdeg.transfer.write_pairs`).
3. The same NAFNet is trained twice, on procedural pairs only and on procedural + learned pairs,
   and evaluated from its checkpoint on held-out photos (Real-ESRGAN, and WQI as the control).
4. Writes docs/synthetic_vs_procedural.md (the table and the settings).
The workdir is reused: finished stages are not redone.
"""
import argparse
import importlib.util
import json
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jaxdeg import degrade, transfer  # noqa: E402
from jaxdeg.data import images as image_io  # noqa: E402
from jaxdeg.data import samples  # noqa: E402
from jaxdeg.train import checkpoint as ckpt  # noqa: E402
from jaxdeg.train import trainer  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "experiments", "synthetic_vs_procedural.py")
RUNS = (("procedural", "procedural (WQI) only"), ("synthetic", "procedural + learned transfers"))


def experiment():
  spec = importlib.util.spec_from_file_location("synthetic_vs_procedural", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def crops(photos, size, per_photo, seed):
  """(crops (N, size, size, 3) in [0, 1], index of the photo each came from)."""
  rng = np.random.default_rng(seed)
  out, owner = [], []
  for p, name in enumerate(photos):
    img = image_io.to_float(samples.load(name))
    h, w = img.shape[:2]
    for _ in range(per_photo):
      y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
      out.append(img[y:y + size, x:x + size])
      owner.append(p)
  return np.stack(out).astype(np.float32), np.array(owner)


def make_pairs(exp, cdd_workdir, folder, n_pairs, n_references, size, seed=0):
  """The learned pairs; returns a description of what was made."""
  photos = exp.TRAIN_PHOTOS
  refs_clean, ref_owner = crops(photos, size, max(1, n_references // len(photos)), seed)
  target = [exp.TARGET]
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(refs_clean))
  references = np.asarray(jax.jit(jax.vmap(lambda k, im: degrade.apply_spec(k, im, target)[0]))(keys, refs_clean))
  contents, content_owner = crops(photos, size, max(1, n_pairs // len(photos)), seed + 2)
  rng = np.random.default_rng(seed + 3)
  # each content gets a reference made from another photo: the model transfers, it does not copy
  choice = np.array([rng.choice(np.flatnonzero(ref_owner != o)) for o in content_owner])
  model = transfer.load(cdd_workdir)
  t0 = time.monotonic()
  written = transfer.write_pairs(model, contents, references[choice], folder, seed=seed)
  return {"pairs": len(contents), "written_now": written, "references": len(references),
          "cdd_step": model.step, "transfer_seconds": time.monotonic() - t0}


def train_and_evaluate(config, workdir):
  if ckpt.latest_step(workdir) != config.train.steps:
    trainer.train_and_evaluate(config, workdir)
  return trainer.evaluate(config, workdir)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cdd-workdir", required=True, help="a trained universal degradation model (task cdd)")
  p.add_argument("--workdir", default="/tmp/synthetic_vs_procedural")
  p.add_argument("--pairs", type=int, default=512)
  p.add_argument("--references", type=int, default=16)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--steps", type=int, help="override the restorers' training steps")
  p.add_argument("--out", default=os.path.join(ROOT, "docs"))
  a = p.parse_args(argv)
  exp = experiment()
  folder = os.path.join(a.workdir, "transfers")
  t0 = time.monotonic()
  made = make_pairs(exp, a.cdd_workdir, folder, a.pairs, a.references, a.size)
  results, minutes = {}, {"learned pairs": (time.monotonic() - t0) / 60}
  for name, _ in RUNS:
    config = exp.get_config("procedural" if name == "procedural" else f"synthetic={folder}")
    if a.steps:
      config.train.steps = config.train.eval_every = config.train.checkpoint_every = a.steps
    t0 = time.monotonic()
    results[name] = train_and_evaluate(config, os.path.join(a.workdir, name))
    minutes[f"restorer: {name}"] = (time.monotonic() - t0) / 60
  steps = config.train.steps
  sets = list(results["procedural"]["by_test_set"])
  lines = ["# Synthetic vs procedural training data, in small", "",
           f"Produced by `python docs/make_synthetic_vs_procedural.py --cdd-workdir {a.cdd_workdir}` "
           f"({jax.devices()[0].device_kind}, {os.cpu_count()} cores). Setup: "
           "`configs/experiments/synthetic_vs_procedural.py`.", "",
           f"- Learned pairs: {made['pairs']} clean {a.size}² crops of the training photos, each carrying the "
           f"degradation the universal degradation model (step {made['cdd_step']}, `{a.cdd_workdir}`) read off one "
           f"of {made['references']} references: crops of *other* training photos degraded by Real-ESRGAN "
           f"(intensity {exp.TARGET['intensity']}).",
           f"- Restorer: NAFNet width 16, {steps} steps, batch 8, 48² crops; the same seed for both runs.",
           f"- Held-out: {', '.join(exp.EVAL_PHOTOS)} ({exp.EVAL_REPEATS} degradation draws each), "
           "128² centre crops; PSNR/SSIM on [0, 1] RGB (skimage's conventions), restored (or degraded) vs clean.", "",
           "| training data | " + " | ".join(f"{s} PSNR | {s} SSIM" for s in sets) + " |",
           "|---" * (1 + 2 * len(sets)) + "|",
           "| (degraded input) | " + " | ".join(
               f"{by['psnr_input']:.2f} | {by['ssim_input']:.4f}"
               for by in (results["procedural"]["by_test_set"][s] for s in sets)) + " |"]
  for name, label in RUNS:
    by = results[name]["by_test_set"]
    lines.append(f"| {label} | " + " | ".join(f"{by[s]['psnr_output']:.2f} | {by[s]['ssim_output']:.4f}"
                                             for s in sets) + " |")
  lines += ["", "| stage | minutes |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in minutes.items()] + [""]
  with open(os.path.join(a.out, "synthetic_vs_procedural.md"), "w") as f:
    f.write("\n".join(lines))
  print("\n".join(lines))
  print(json.dumps({k: {s: v["by_test_set"][s] for s in sets} for k, v in results.items()}, indent=1))


if __name__ == "__main__":
  main()
