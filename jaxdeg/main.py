"""The one entry point for every stage, chosen by an ml_collections config.

  python -m jaxdeg.main --config=configs/<experiment>.py[:variant] --workdir=DIR \\
      [--mode=train|evaluate|compile|synthesize|cache_latents] [--step=N] [--config.some.field=value ...]

Multi-process runs (one process per host or per GPU) connect through jax.distributed: from the
environment on TPU pods, SLURM and Kubernetes, or explicitly with --coordinator_address,
--num_processes and --process_id.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxdeg import host_memory, log_filter
from jaxdeg.errors import UserError

MODES = ("train", "evaluate", "compile", "synthesize", "cache_latents")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and outputs.")
_MODE = flags.DEFINE_enum("mode", "train", MODES, "What to run.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step for --mode=evaluate (default: latest).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Also print the libraries' INFO logs (orbax, XLA, clu).")


def run(config, workdir, mode="train", step=None):
  """Python API behind the command line."""
  from jaxdeg.train import defaults, trainer
  defaults.check(config)
  if mode == "train":
    return trainer.train_and_evaluate(config, workdir)
  if mode == "evaluate":
    return trainer.evaluate(config, workdir, step=step)
  if mode == "compile":
    from jaxdeg.train.compile_report import compile_report
    return compile_report(config, workdir)
  if mode == "synthesize":
    import jax

    from jaxdeg.synth import contact_sheet
    from jaxdeg.synth import run as synth_run
    summary = synth_run.run(config, trainer.ensure_workdir(workdir))
    if jax.process_index() == 0:
      logging.info("synthesised pairs: %s", contact_sheet.write(workdir))
    return summary
  if mode == "cache_latents":
    from jaxdeg import tasks
    return tasks.get(config).write_latent_cache()
  raise UserError(f"--mode={mode!r}: must be one of {', '.join(MODES)}")


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required, e.g. --config=configs/restore_procedural.py")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required")
  log_filter.install(_VERBOSE.value)
  try:
    from jaxdeg.train import distributed
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    run(_CONFIG.value, _WORKDIR.value, _MODE.value, _STEP.value)
    distributed.shutdown()
  except UserError as e:
    # Bad input is the user's to fix: one line naming the thing and the reason, no traceback.
    logging.flush()
    print(f"jaxdeg: error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


def _config_error(e, argv):
  """A bad --config file or --config.* override -> one line naming it."""
  config_arg = next((a for a in argv if a.startswith("--config=")), "--config")
  if isinstance(e, SyntaxError):
    return f"{config_arg}: syntax error at line {e.lineno}: {e.msg}"
  if isinstance(e, AttributeError) and "get_config" in str(e):
    return f"{config_arg}: the file defines no get_config()"
  if isinstance(e, (AttributeError, KeyError)):  # an override naming a field the config lacks
    name = str(e).strip("'\" ")
    given = [a.split("=")[0] for a in argv if a.startswith("--config.") and name in a.split("=")[0].split(".")]
    return f"{given[0] if given else name}: no such config field"
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  # ml_collections puts the config's own traceback in the message: its last line is the reason
  return f"{config_arg}: {lines[-1]}" if len(lines) > 1 else (lines[0] if lines else type(e).__name__)


def _parse_flags(argv):
  """absl's flag parsing, but a bad config file, variant, field or value is one line and exit 2 (absl
  would print a traceback or 'FATAL Flags parsing error' and exit 1)."""
  # main() called again in one process (tests): start from the defaults, without the last config's
  # override flags (ml_collections defines them while parsing)
  if flags.FLAGS.is_parsed():
    flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith(f"{_CONFIG.name}.")]:
    delattr(flags.FLAGS, name)
  saved, sys.argv = sys.argv, list(argv)  # ml_collections finds --config.* overrides in sys.argv
  try:
    rest = flags.FLAGS(argv)
  except (flags.Error, SyntaxError, AttributeError, KeyError, ValueError, TypeError, OSError) as e:
    message = _config_error(e, argv)
  else:
    # a missing file is not an error to ml_collections until the config is used; `path:variant`
    path = flags.FLAGS["config"].config_filename.split(":", 1)[0] if flags.FLAGS["config"].present else None
    if path is None or os.path.isfile(path):
      return rest
    message = f"--config={path}: no such file"
  finally:
    sys.argv = saved
  print(f"jaxdeg: error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv=None):
  # Train steps repeat: their buffers are worth keeping (jaxdeg.host_memory). Not for the short
  # image commands of jaxdeg.cli, whose time is compilation, which one malloc arena slows down.
  host_memory.reuse_freed_memory()  # before JAX starts its threads
  app.run(_main, argv=argv, flags_parser=_parse_flags)


if __name__ == "__main__":
  main()
