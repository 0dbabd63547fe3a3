"""Write docs/degradations.png: every registered degradation at intensities 0.25 / 0.5 / 1.

Usage: python docs/make_degradation_sheet.py [OUT.png] [--size 160]
(the same as `jaxdeg degrade --contact-sheet OUT.png`).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from jaxdeg.degrade.cli import main  # noqa: E402

if __name__ == "__main__":
  args = sys.argv[1:]
  out = args.pop(0) if args and not args[0].startswith("-") else str(pathlib.Path(__file__).parent / "degradations.png")
  sys.exit(main(["--contact-sheet", out] + args))
