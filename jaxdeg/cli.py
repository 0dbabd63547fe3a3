"""`jaxdeg` console script.

  jaxdeg train|evaluate|compile|synthesize --config=... --workdir=... [...]   forwards to jaxdeg.main
  jaxdeg degrade IN OUT --type haze --intensity 0.6        image-level utilities
  jaxdeg restore --workdir RUN IN OUT_DIR [--tile 256]     a trained restorer on images or a folder
"""
import importlib
import sys

# Subcommand -> module with `main(argv) -> int`.
UTILITIES = {"degrade": "jaxdeg.degrade.cli", "restore": "jaxdeg.restore_cli"}
UTILITIES["transfer"] = "jaxdeg.transfer"  # jaxdeg transfer --workdir RUN --content X --reference Y OUT


def main(argv=None):
  argv = list(sys.argv if argv is None else argv)
  prog, args = "jaxdeg", argv[1:]
  if not args or args[0] in ("-h", "--help"):
    print(__doc__.strip())
    return 0
  command, rest = args[0], args[1:]
  if command in ("train", "evaluate", "compile", "synthesize"):
    from jaxdeg import main as entry
    return entry.main([prog, f"--mode={command}", *rest])
  if command in UTILITIES:
    return importlib.import_module(UTILITIES[command]).main(rest)
  print(f"jaxdeg: error: unknown command {command!r}; commands: train, evaluate, compile, synthesize, {', '.join(UTILITIES)}",
        file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
