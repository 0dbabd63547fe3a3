"""`jaxdeg restore`: a trained restorer applied to images at full resolution, tile by tile.

  jaxdeg restore --workdir RUN INPUT OUTPUT_DIR [--tile 256 --overlap 32 --step N]

INPUT is an image or a folder of images (no targets needed); each output is written as PNG under
OUTPUT_DIR with the input's name. Tiles keep memory bounded whatever the image size; overlapping
tiles are blended (see jaxdeg.models.restore.tiling). Unreadable files are skipped, listed and
counted; the exit status is 1 when any was skipped.
"""
import os
import sys

import jax
import numpy as np

from jaxdeg.data.images import EXTENSIONS, read_image, write_image
from jaxdeg.errors import UserError
from jaxdeg.train.defaults import TILING


def _inputs(path):
  if os.path.isdir(path):
    names = sorted(f for f in os.listdir(path) if os.path.splitext(f)[1].lower() in EXTENSIONS)
    if not names:
      raise UserError(f"{path}: no images ({', '.join(sorted(EXTENSIONS))}) in this folder")
    return [os.path.join(path, f) for f in names]
  if not os.path.exists(path):
    raise UserError(f"{path}: no such file or folder")
  return [path]


def restorer(workdir, step=None, tile=TILING["tile"], overlap=TILING["tile_overlap"]):
  """image (H, W, 3) float in [0, 1] -> restored image, from the run in `workdir`."""
  from jaxdeg.models.restore.tiling import tiled_apply
  from jaxdeg.tasks import runs
  config, task, state, step = runs.load_run(workdir, step)
  if not hasattr(task, "model") or config.task != "restore":
    raise UserError(f"{workdir}: a `{config.task}` run, not a restorer (task `restore`)")
  params = state.inference_params()
  apply = jax.jit(lambda x: task.model.apply({"params": params}, x))

  def restore(image):  # tile offsets on the restorer's downsampling grid (task.align)
    out = tiled_apply(apply, image, tile=tile, overlap=overlap, batch_tiles=TILING["tile_batch"], align=task.align)
    return np.clip(np.asarray(out), 0.0, 1.0)
  return restore, step


def main(argv=None):
  from jaxdeg.cli import ArgumentParser
  p = ArgumentParser(prog="jaxdeg restore", description=__doc__.splitlines()[0])
  p.add_argument("input")
  p.add_argument("output_dir")
  p.add_argument("--workdir", required=True, help="the trained `restore` run")
  p.add_argument("--step", type=int)
  p.add_argument("--tile", type=int, default=TILING["tile"])
  p.add_argument("--overlap", type=int, default=TILING["tile_overlap"])
  try:
    a = p.parse_args(argv)
    if os.path.exists(a.output_dir) and not os.path.isdir(a.output_dir):
      raise UserError(f"{a.output_dir}: a file, not a folder for the restored images")
    paths = _inputs(a.input)
    restore, step = restorer(a.workdir, a.step, a.tile, a.overlap)
    os.makedirs(a.output_dir, exist_ok=True)
    skipped = []
    for path in paths:
      try:
        image = read_image(path)
      except UserError as e:
        skipped.append(str(e))  # names the file and the reason
        continue
      out_name = os.path.splitext(os.path.basename(path))[0] + ".png"
      write_image(os.path.join(a.output_dir, out_name), restore(image))
  except UserError as e:
    print(f"jaxdeg: error: {e}", file=sys.stderr)
    return 2
  from jaxdeg.cli import finish_batch
  return finish_batch(f"restored {len(paths) - len(skipped)} image(s) with step {step} into {a.output_dir}", skipped,
                      "file(s)")


if __name__ == "__main__":
  sys.exit(main())
