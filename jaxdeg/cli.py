"""`jaxdeg` console script.

  jaxdeg train|evaluate|compile|synthesize|cache_latents --config=... --workdir=...   forwards to jaxdeg.main
  jaxdeg degrade IN OUT --type haze --intensity 0.6        image-level utilities
  jaxdeg restore --workdir RUN IN OUT_DIR [--tile 256]     a trained restorer on images or a folder
  jaxdeg transfer --workdir RUN|--weights latest.pt --content X --reference Y OUT   a degradation model
  jaxdeg gendeg --weights gendeg.ckpt --type haze --mu 0.3 --sigma 0.1 IN OUT   GenDeg's released model
"""
import argparse
import importlib
import sys

from jaxdeg.errors import UserError

# Subcommand -> module with `main(argv) -> int`.
UTILITIES = {"degrade": "jaxdeg.degrade.cli", "restore": "jaxdeg.restore_cli", "transfer": "jaxdeg.transfer",
             "gendeg": "jaxdeg.gendeg_cli"}


class ArgumentParser(argparse.ArgumentParser):
  """argparse for every subcommand: a usage error is a UserError, printed like any other bad input as
  the one line `jaxdeg: error: ...` with exit status 2 (argparse itself prints usage and its own prefix)."""

  def error(self, message):
    raise UserError(f"{self.prog}: {message}")


def finish_batch(summary, skipped, what):
  """A folder command's last words: the summary, then the skipped inputs (each with its reason) on
  stderr; exit status 1 when anything was skipped, else 0."""
  print(summary)
  if skipped:
    print(f"skipped {len(skipped)} unreadable {what}:\n  " + "\n  ".join(skipped), file=sys.stderr)
    return 1
  return 0


def main(argv=None):
  argv = list(sys.argv if argv is None else argv)
  prog, args = "jaxdeg", argv[1:]
  if not args or args[0] in ("-h", "--help"):
    print(__doc__.strip())
    return 0
  command, rest = args[0], args[1:]
  from jaxdeg import main as entry  # its mode list is the one list of modes
  if command in entry.MODES:
    return entry.main([prog, f"--mode={command}", *rest])
  if command in UTILITIES:
    return importlib.import_module(UTILITIES[command]).main(rest)
  print(f"jaxdeg: error: unknown command {command!r}; commands: {', '.join((*entry.MODES, *UTILITIES))}",
        file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
