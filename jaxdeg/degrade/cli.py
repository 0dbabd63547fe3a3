"""`jaxdeg degrade`: put one procedural degradation on one image, or draw the contact sheet.

    jaxdeg degrade IN OUT --type haze --intensity 0.6 --seed 0 [--param beta=1.2 ...]
    jaxdeg degrade --contact-sheet docs/degradations.png

`main` takes the arguments after `degrade` and returns the exit status (2 for bad input, with one
line on stderr that names the thing and the reason).
"""
import os
import sys

import numpy as np

from jaxdeg.errors import UserError

SHEET_INTENSITIES = (0.25, 0.5, 1.0)


def _parser():
  from jaxdeg.cli import ArgumentParser
  p = ArgumentParser(prog="jaxdeg degrade", description="Apply a procedural degradation to an image.")
  p.add_argument("input", nargs="?", help="input image (PNG, JPEG, ... anything Pillow reads)")
  p.add_argument("output", nargs="?", help="output image; the format follows the extension")
  p.add_argument("--type", help="degradation name (see --list)")
  p.add_argument("--intensity", type=float, default=0.5, help="strength in [0, 1] (default 0.5)")
  p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
  p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                 help="set a physical parameter directly; repeatable; VALUE is a number, a comma list, "
                      "a word, a comma list of words, or an image file (loaded as a grey map, e.g. depth=depth.png)")
  p.add_argument("--list", action="store_true", help="print the available degradations and exit")
  p.add_argument("--contact-sheet", metavar="OUT.png",
                 help="write a grid of every degradation at intensities 0.25/0.5/1 on a sample photo")
  p.add_argument("--sheet-size", type=int, default=160, help="tile size of the contact sheet in px")
  return p


def load_image(path, what="input image"):
  """Float32 RGB in [0, 1] (images.read_image: the pixel cap, value checks); raises UserError naming
  the file when it is missing or unusable."""
  from jaxdeg.data.images import read_image
  try:
    return read_image(path)
  except UserError as e:
    raise UserError(f"{what}: {e}") from None


def save_image(path, image):
  from PIL import Image
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f"output folder {folder!r} does not exist")
  pixels = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
  try:
    Image.fromarray(pixels).save(path)
  except (ValueError, KeyError) as e:
    raise UserError(f"output {path!r}: cannot choose an image format from its extension ({e})") from None
  except OSError as e:
    raise UserError(f"output {path!r} cannot be written ({e})") from None


def parse_param(text):
  """'key=value' -> (key, value): number, list of numbers, image map, or word."""
  if "=" not in text:
    raise UserError(f"--param expects KEY=VALUE, got {text!r}")
  key, value = (s.strip() for s in text.split("=", 1))
  if not key:
    raise UserError(f"--param {text!r} has no name before '='")
  if os.path.isfile(value):
    return key, load_image(value, f"--param {key} map").mean(-1)
  parts = [v.strip() for v in value.split(",")]
  try:
    numbers = [float(v) for v in parts]
  except ValueError:
    return key, parts if len(parts) > 1 else value
  return key, numbers[0] if len(numbers) == 1 else np.asarray(numbers, np.float32)


def degrade_file(args):
  import jax
  from jaxdeg import degrade
  if not args.input or not args.output:
    raise UserError("jaxdeg degrade: give an input and an output image (or --contact-sheet OUT.png)")
  if not args.type:
    raise UserError(f"jaxdeg degrade: --type is required; available: {', '.join(degrade.available())}")
  if not 0.0 <= args.intensity <= 1.0:
    raise UserError(f"--intensity must be in [0, 1], got {args.intensity}")
  fn = degrade.get(args.type)
  overrides = dict(parse_param(p) for p in args.param)
  image = load_image(args.input)
  out, params = jax.jit(lambda k, im, i: fn(k, im, i, **overrides))(
      jax.random.key(args.seed), image, np.float32(args.intensity))
  save_image(args.output, out)
  shown = ", ".join(f"{k}={np.asarray(v, np.float64).round(4).tolist()}" for k, v in sorted(params.items())
                    if not isinstance(v, dict) and np.asarray(v).size <= 3)
  print(f"wrote {args.output}: {args.type} at intensity {args.intensity} ({shown})")


def sample_photo(size, name="astronaut"):
  """A clean photo that ships with scikit-image, resized to size², float32 in [0, 1]."""
  from skimage import data, transform
  photo = getattr(data, name)()
  return transform.resize(photo, (size, size), anti_aliasing=True).astype(np.float32)


def contact_sheet(path, size=160, seed=0, names=None):
  """Every degradation (rows) at SHEET_INTENSITIES (columns, after the clean photo), labelled."""
  import jax
  from PIL import Image, ImageDraw
  from jaxdeg import degrade
  names = names or degrade.available()
  photo = sample_photo(size)
  label_w, head_h = 120, 18
  sheet = Image.new("RGB", (label_w + size * (1 + len(SHEET_INTENSITIES)), head_h + size * len(names)), "white")
  draw = ImageDraw.Draw(sheet)
  for j, title in enumerate(["clean"] + [f"intensity {t:g}" for t in SHEET_INTENSITIES]):
    draw.text((label_w + j * size + 4, 3), title, fill="black")
  intensities = np.asarray(SHEET_INTENSITIES, np.float32)
  for i, name in enumerate(names):
    fn = degrade.get(name)
    batch = np.broadcast_to(photo, (len(intensities),) + photo.shape)
    # Same key for every column, so columns differ only in strength.
    keys = jax.random.split(jax.random.key(seed), 1)[np.zeros(len(intensities), int)]
    out, _ = jax.jit(jax.vmap(fn))(keys, batch, intensities)
    tiles = [photo] + list(np.asarray(out))
    y = head_h + i * size
    draw.text((4, y + size // 2 - 6), name, fill="black")
    for j, tile in enumerate(tiles):
      sheet.paste(Image.fromarray(np.clip(np.round(tile * 255), 0, 255).astype(np.uint8)), (label_w + j * size, y))
  save_image_pil(path, sheet)
  return path


def save_image_pil(path, pil_image):
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f"output folder {folder!r} does not exist")
  pil_image.save(path)


def main(argv: list[str]) -> int:
  try:
    args = _parser().parse_args(argv)
    if args.list:
      from jaxdeg import degrade
      print("\n".join(degrade.available()))
    elif args.contact_sheet:
      print(f"wrote {contact_sheet(args.contact_sheet, args.sheet_size, args.seed)}")
    else:
      degrade_file(args)
  except UserError as e:
    print(f"jaxdeg: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
