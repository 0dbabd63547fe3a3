"""Evaluation of a universal degradation model (`cdd` run) from its checkpoint, as one table.

Rows: reproduction (ŷ made from y's own embedding), transfer (from another image carrying the same
degradation), and two baselines that need no model: `clean` (predict the clean image, i.e. no
degradation at all) and `residual_paste` (the clean image plus the reference's high-frequency
residual, reference − GaussianBlur_σ(reference)). Columns: PSNR, SSIM (skimage defaults) and
MS-SSIM against the true degraded image, all on [0, 1], and LPIPS / DISTS where the run's
config names their weight files (`eval.vgg16_weights`, `eval.lpips_weights`, `eval.dists_weights`). The per-example values come from
`CddTask.eval_step`; how reference and target are made is described there.

Film-grain runs (`config.eval.grain_stats=True`, set by configs/cdd_film_grain.py, or
`--grain-stats`) get a second table from `jaxdeg.cdd_grain_eval`: grain statistics (σ-vs-luma
curve error, spectrum distance, histogram JSD) of each method against the true grain, with a
best-fit AV1 grain table as one more baseline.

    python -m jaxdeg.cdd_eval RUN_DIR [--step N] [--grain-stats]   # evaluate, then print the tables
    python -m jaxdeg.cdd_eval --weights latest.pt --config configs/cdd_film_grain.py:pairs=/data/grain \
        --output-dir out/                                          # the authors' released weights

Official weights have no run config: `--config` names the experiment whose evaluation data and
protocol to use (its model fields must describe the checkpoint's network, e.g. the paper-size
configs; official_input_scaling is set), and the outputs go to --output-dir.
"""
import sys

from jaxdeg.tasks.cdd_ops import ms_ssim_scales

ROWS = (("reproduction", "reproduction (y's own embedding)"),
        ("transfer", "transfer (embedding of another image, same degradation)"),
        ("clean", "baseline: clean image"),
        ("residual_paste", "baseline: residual paste"))
COLUMNS = (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("ms_ssim", "MS-SSIM", "{:.4f}"),
           ("lpips", "LPIPS ↓", "{:.4f}"), ("dists", "DISTS ↓", "{:.4f}"))  # the last two with weight files


def table(results, eval_crop=None) -> str:
  """Markdown table of the methods (rows) by metrics (columns) from evaluation results."""
  columns = [c for c in COLUMNS if f"transfer_{c[0]}" in results]
  lines = ["| method | " + " | ".join(title for _, title, _ in columns) + " |",
           "|---" * (len(columns) + 1) + "|"]
  for key, label in ROWS:
    cells = [fmt.format(results[f"{key}_{name}"]) for name, _, fmt in columns]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  notes = [f"{results.get('num_examples', '?')} examples"]
  if eval_crop:
    notes.append(f"{eval_crop}² crops; MS-SSIM on {ms_ssim_scales(eval_crop)} of 5 scales")
  return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n"


def evaluate(workdir, step=None, grain_stats=None):
  """(results, Markdown table) of the run in `workdir`, evaluated from its checkpoint with the
  config it was trained with; writes metrics.json, metrics.md and the image grid there. With grain
  statistics (`grain_stats`, default config.eval.grain_stats) the grain tables follow the first
  one, their numbers are results["grain"], and grain_stats.json / grain_stats.md are written too."""
  from jaxdeg.errors import UserError
  from jaxdeg.train import checkpoint as ckpt
  from jaxdeg.train import trainer
  config, _ = ckpt.restore_config(workdir, step)
  if config.get("task") != "cdd":
    raise UserError(f"{workdir}: a `{config.get('task')}` run, not a degradation model (task `cdd`)")
  results = trainer.evaluate(config, workdir, step=step)
  text = table(results, config.data.eval_crop)
  if grain_stats is None:
    grain_stats = config.eval.get("grain_stats", False)
  if grain_stats:
    from jaxdeg import cdd_grain_eval
    results["grain"], grain_text = cdd_grain_eval.evaluate(config, workdir, results["step"])
    text += "\n" + grain_text
  return results, text


def config_from_file(spec):
  """'configs/x.py[:arg]' → that experiment's ConfigDict."""
  import importlib.util
  import os
  from jaxdeg.errors import UserError
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"--config {path}: no such config file")
  module_spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def evaluate_official(weights, config, output_dir, grain_stats=None):
  """(results, tables) of an official checkpoint on `config`'s evaluation (see the module doc);
  writes metrics.json, metrics.md, the grid (and grain_stats.*) into output_dir."""
  import json
  import os

  import jax
  from jaxdeg.data import images as image_io
  from jaxdeg.errors import UserError
  from jaxdeg.train import evaluation, trainer, writers
  if config.get("task") != "cdd":
    raise UserError(f"--config: a `{config.get('task')}` experiment, not the degradation model (task `cdd`)")
  config.init_from, config.model.official_input_scaling = weights, True
  out = trainer.ensure_workdir(output_dir)
  setup = trainer.Setup(config)
  state = trainer._load_init_from(setup, setup.init(setup.rng))  # the import that fine-tuning starts from
  results, grid = evaluation.evaluate_state(setup, state, writers.create_writer(out), 0)
  results["weights"] = os.path.abspath(weights)
  if jax.process_index() == 0:
    with open(os.path.join(out, "metrics.json"), "w") as f:
      json.dump(results, f, indent=1)
    with open(os.path.join(out, "metrics.md"), "w") as f:
      f.write(evaluation.metrics_markdown(results, f"official checkpoint {weights}"))
    if grid is not None:
      image_io.write_image(os.path.join(out, config.eval.grid_name), grid)
  text = table(results, config.data.eval_crop)
  if config.eval.get("grain_stats", False) if grain_stats is None else grain_stats:
    from jaxdeg import cdd_grain_eval
    results["grain"], grain_text = cdd_grain_eval.evaluate_state(setup, state, out, f"official checkpoint {weights}")
    text += "\n" + grain_text
  return results, text


def main(argv=None):
  import argparse
  from jaxdeg.errors import UserError
  p = argparse.ArgumentParser(prog="python -m jaxdeg.cdd_eval", description=__doc__.splitlines()[0])
  p.add_argument("workdir", nargs="?", help="a `cdd` run")
  p.add_argument("--step", type=int)
  p.add_argument("--weights", help="an official checkpoint file instead of a run (needs --config, --output-dir)")
  p.add_argument("--config", help="with --weights: configs/<experiment>.py[:arg] giving the evaluation")
  p.add_argument("--output-dir", help="with --weights: where the results go")
  p.add_argument("--grain-stats", action="store_true", default=None,
                 help="add the grain statistics tables (default: the run's config.eval.grain_stats)")
  a = p.parse_args(argv)
  try:
    if (a.workdir is None) == (a.weights is None):
      raise UserError("give a run folder (RUN_DIR) or an official checkpoint (--weights FILE), one of them")
    if a.weights is not None:
      if not (a.config and a.output_dir):
        raise UserError("--weights needs --config (the evaluation to run) and --output-dir")
      results, text = evaluate_official(a.weights, config_from_file(a.config), a.output_dir, a.grain_stats)
      header = f"official checkpoint {a.weights}"
    else:
      import os
      if os.path.isfile(a.workdir):
        raise UserError(f"{a.workdir}: a file, not a run folder (an official checkpoint? give it with --weights "
                        "and --config)")
      results, text = evaluate(a.workdir, a.step, a.grain_stats)
      header = f"step {results['step']}"
  except UserError as e:
    print(f"jaxdeg: error: {e}", file=sys.stderr)
    return 2
  print(f"{header}\n\n{text}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
