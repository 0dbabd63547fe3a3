"""The universal degradation model's CPU experiment, end to end: trains configs/cdd_general.py:cpu,
evaluates it from its checkpoint, and writes docs/cdd_cpu.md (the table against the baselines)
and docs/cdd_transfer.png (content | reference | transfer | truth).

  python docs/make_cdd_cpu_run.py [--workdir /tmp/cdd_cpu] [--steps N] [--docs-dir docs]

The workdir is reused: an interrupted run resumes from its last checkpoint; a finished one is only
evaluated again. --steps overrides the step count (for a quick check of the pipeline: write that
into another --docs-dir).
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the CPU experiment, even where a GPU is visible

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CONFIG = "configs/cdd_general.py"


def load_config(steps=None):
  spec = importlib.util.spec_from_file_location("cdd_general", os.path.join(ROOT, CONFIG))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("cpu")
  if steps is not None:
    config.train.steps = steps
    config.train.eval_every = config.train.checkpoint_every = steps
    config.train.log_every = min(config.train.log_every, steps)
  return config


def history_table(workdir):
  """Evaluations made during training (reproduction and transfer PSNR / MS-SSIM by step)."""
  path = os.path.join(workdir, "eval_history.jsonl")
  if not os.path.exists(path):
    return ""
  with open(path) as f:
    records = [json.loads(line) for line in f]
  lines = ["| step | reproduction PSNR | transfer PSNR | reproduction MS-SSIM | transfer MS-SSIM |",
           "|---|---|---|---|---|"]
  for r in records:
    lines.append(f"| {r['step']} | {r['reproduction_psnr']:.2f} | {r['transfer_psnr']:.2f} | "
                 f"{r['reproduction_ms_ssim']:.4f} | {r['transfer_ms_ssim']:.4f} |")
  return "\n".join(lines) + "\n"


def write_markdown(path, workdir, config, results, table, seconds, command, params):
  m = config.model
  text = f"""# Universal degradation model: CPU experiment

A small version of the universal degradation model (content–degradation disentanglement) trained
from scratch on the CPU on the bundled photos ({len(config.data.sources)} sources: WQI degradations,
and WQI plus inpainting holes), then evaluated from its checkpoint on held-out photos.

- Model: generator width {m.generator_width}, blocks {tuple(m.generator_blocks)}, encoders {m.encoder_dim} wide,
  global embedding {m.global_dim}, critic width {config.critic.width}; {params / 1e6:.2f} M parameters
  (generator, encoders, compressors; critic excluded).
- Training: {config.train.steps} steps, batch {config.train.batch_size}, {config.data.crop}² crops,
  {seconds / 60:.1f} min wall time (compilation, training and the evaluations during it).
- Evaluation: step {results['step']}, {config.data.eval_crop}² centre crops of {', '.join(sorted(set(
    config.data.eval_sources[0]['photos'])))}, each degraded with WQI (+ holes at p 0.25) drawn from its
  index. Reproduction embeds the degraded target itself; transfer embeds another photo degraded
  with exactly the same parameters and hole mask but its own noise realisation, as two real
  photos with one degradation would be (`eval.shared_fields={config.eval.shared_fields}`; see
  `jaxdeg.tasks.cdd`). Training crops are blurred as crops of {config.data.sources[0]['degradations'][0].get('side', config.data.crop)}² images. No DISTS/LPIPS
  loss (no VGG weights offline): L1 + colour + diversity + contrastive + rates + WGAN-GP.

## Against the baselines (higher is better; all against the true degraded image)

{table}
## During training

{history_table(workdir)}
![content | reference | transfer | truth](cdd_transfer.png)

Command:

```
{command}
```
"""
  with open(path, "w") as f:
    f.write(text)


def train_timed(trainer, config, workdir):
  """Trains (or resumes) and returns the training wall time summed over the invocations that trained,
  kept in workdir/wall_time.json, so evaluating a finished run again does not reset it."""
  from jaxdeg.train import checkpoint as ckpt
  record = os.path.join(workdir, "wall_time.json")
  before = 0.0
  if os.path.exists(record):
    with open(record) as f:
      before = json.load(f)["seconds"]
  if (ckpt.latest_step(workdir) or 0) >= config.train.steps:
    return before
  t0 = time.monotonic()
  trainer.train_and_evaluate(config, workdir)
  seconds = before + time.monotonic() - t0
  with open(record, "w") as f:
    json.dump({"seconds": seconds}, f)
  return seconds


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", default="/tmp/cdd_cpu")
  p.add_argument("--steps", type=int)
  p.add_argument("--docs-dir", default=os.path.join(ROOT, "docs"))
  a = p.parse_args(argv)

  from absl import logging
  logging.set_verbosity(logging.INFO)
  import jax
  from jaxdeg import cdd_eval
  from jaxdeg.tasks.cdd import CddTask
  from jaxdeg.train import trainer

  config = load_config(a.steps)
  seconds = train_timed(trainer, config, a.workdir)
  results, table = cdd_eval.evaluate(a.workdir)
  task = CddTask(config)
  params = sum(x.size for x in jax.tree.leaves(
      jax.eval_shape(lambda r: task.init_state(r).params["model"], jax.random.PRNGKey(0))))
  os.makedirs(a.docs_dir, exist_ok=True)
  shutil.copyfile(os.path.join(a.workdir, config.eval.grid_name), os.path.join(a.docs_dir, "cdd_transfer.png"))
  steps = "" if a.steps is None else f" --steps {a.steps}"
  command = f"python docs/make_cdd_cpu_run.py --workdir {a.workdir}{steps}"
  write_markdown(os.path.join(a.docs_dir, "cdd_cpu.md"), a.workdir, config, results, table, seconds, command, params)
  print(table)
  print(f"wrote {a.docs_dir}/cdd_cpu.md and cdd_transfer.png ({seconds / 60:.1f} min)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
