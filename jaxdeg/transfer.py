"""Degradation transfer with a trained universal degradation model (a `cdd` run).

Python:

    from jaxdeg import transfer
    t = transfer.load("runs/cdd")                 # latest checkpoint (or step=N)
    emb = t.embed(degraded)                       # the degradation of an image, [0, 1] in
    out = t.apply(clean, emb, key=0)              # ... put on a clean image, [0, 1] out
    outs = t.transfer(clean, degraded, key=0, samples=4)

Images are (H, W, 3) or (B, H, W, 3) floats in [0, 1], any size: they are padded (reflect) to the
multiple the model needs and cropped back. `apply` is differentiable with respect to the clean
image, so a trained model serves as a degradation operator inside a restorer's loss. One embedding
(batch 1) may be applied to a batch of clean images.

Command line:

    jaxdeg transfer --workdir RUN --content clean.png --reference degraded.png OUT.png
        [--samples N] [--seed S] [--step K]
    jaxdeg transfer --workdir RUN --content-dir CLEAN/ --reference-dir DEGRADED/ --output-dir OUT/

Datasets of pairs for a restorer: `write_pairs(model, contents, references, folder)` puts each
reference's degradation on its content image and writes (clean, transferred) pairs as ArrayRecord
shards (`jaxdeg.data.records`), which `kind="array_record"` data sources read.

With N samples, OUT_0.png ... OUT_{N-1}.png (one file when N = 1). In batch mode, files pair by
matching names (stems) when every content image has a reference of the same stem, otherwise by
sorted order (the two folders must then hold as many images); outputs take the content's stem.
Unreadable images are skipped, counted and listed, and the exit status is then 1.
"""
import argparse
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.data.images import EXTENSIONS, read_image, write_image
from jaxdeg.errors import UserError
from jaxdeg.models.cdd.ops import resize_bilinear_align_corners
from jaxdeg.tasks._cdd_ops import rbg_key

GENERATOR_MULTIPLE = 8   # two stride-2 stages, and IDA halves the coarsest
COMPRESSOR_MULTIPLE = 32  # the local compressor works at 1/32 of the image


def _batched(image):
  image = jnp.asarray(image, jnp.float32)
  if image.ndim == 3:
    return image[None], True
  if image.ndim != 4 or image.shape[-1] != 3:
    raise UserError(f"transfer: expected an image (H, W, 3) or a batch (B, H, W, 3), got shape {image.shape}")
  return image, False


def _pad_to(images, multiple):
  h, w = images.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  if not ph and not pw:
    return images
  return jnp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")


def _as_key(key):
  if isinstance(key, (int, np.integer)):
    return jax.random.PRNGKey(int(key))
  return key


class Transfer:
  """A trained degradation model: `embed` a degraded image, `apply` the embedding to a clean one."""

  def __init__(self, config, task, state, step):
    self.config, self.task, self.step = config, task, step
    self.variables = task.variables(state)
    model = task.model
    self.multiple = COMPRESSOR_MULTIPLE if model.use_entropy and model.use_iden else GENERATOR_MULTIPLE
    # variables are arguments, not constants baked into the program
    self._embed = jax.jit(task.embed)
    self._apply = jax.jit(lambda v, x, emb, key: task.apply(v, x, emb, rbg_key(key)))

  def embed(self, y):
    """Embeddings of degraded image(s) y in [0, 1]; the local map covers y's own (unpadded) area."""
    y, _ = _batched(y)
    h, w = y.shape[1:3]
    emb = self._embed(self.variables, _pad_to(y, self.multiple))
    if emb.local_embedding is not None:
      emb = emb.replace(local_embedding=emb.local_embedding[:, :math.ceil(h / 2), :math.ceil(w / 2)])
    return emb

  def apply(self, x, embeddings, key=0, clip=True):
    """Clean image(s) x in [0, 1] carrying `embeddings`' degradation, in [0, 1].

    `key` (an int or a JAX key) draws the generator's noise. The local map is resized to x's
    half-resolution grid, as the model does for an embedding from an image of another size."""
    x, single = _batched(x)
    b, h, w = x.shape[:3]
    grid = (math.ceil(h / 2), math.ceil(w / 2))
    padded = _pad_to(x, GENERATOR_MULTIPLE)
    big = (padded.shape[1] // 2, padded.shape[2] // 2)
    local = embeddings.local_embedding
    if local is not None:
      local = resize_bilinear_align_corners(local, grid)
      local = jnp.pad(local, ((0, 0), (0, big[0] - grid[0]), (0, big[1] - grid[1]), (0, 0)), mode="edge")
    emb = embeddings.replace(global_embedding=self._fit_batch(embeddings.global_embedding, b),
                             local_embedding=None if local is None else self._fit_batch(local, b))
    out = self._apply(self.variables, padded, emb, _as_key(key))[:, :h, :w]
    if clip:
      out = jnp.clip(out, 0.0, 1.0)
    return out[0] if single else out

  @staticmethod
  def _fit_batch(a, b):
    if a.shape[0] == b:
      return a
    if a.shape[0] == 1:
      return jnp.broadcast_to(a, (b,) + a.shape[1:])
    raise UserError(f"transfer: {a.shape[0]} embeddings for {b} images; give one, or one per image")

  def transfer(self, x, y, key=0, samples=1):
    """y's degradation on x: x's shape when samples == 1, else a (samples, ...) stack of draws."""
    emb = self.embed(y)
    keys = jax.random.split(_as_key(key), samples) if samples > 1 else [_as_key(key)]
    outs = [self.apply(x, emb, k) for k in keys]
    return outs[0] if samples == 1 else jnp.stack(outs)


def write_pairs(model, contents, references, folder, *, seed=0, batch_size=16, names=None, prefix="transfer",
                type_name="transfer"):
  """(clean content i, content i carrying reference i's degradation) pairs → ArrayRecord shards.

  contents, references: (N, H, W, 3) in [0, 1] (the same size within each array). Batch b draws the
  generator's noise with fold_in(seed, b). Resumable: pairs already in `folder` (a previous,
  interrupted call with the same arguments) are not written again. Returns the number written."""
  from jaxdeg.data import records
  contents, references = np.asarray(contents, np.float32), np.asarray(references, np.float32)
  if contents.ndim != 4 or references.ndim != 4 or len(contents) != len(references):
    raise UserError(f"write_pairs: contents {contents.shape} and references {references.shape} must be "
                    "(N, H, W, 3) batches of the same length")
  to_uint8 = lambda a: np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
  writer = records.RecordWriter(folder, prefix=prefix, records_per_chunk=256, process_index=0, process_count=1)
  start, written = writer.written, 0
  for b in range(start - start % batch_size, len(contents), batch_size):
    out = np.asarray(model.transfer(contents[b:b + batch_size], references[b:b + batch_size],
                                    key=jax.random.fold_in(jax.random.PRNGKey(seed), b // batch_size)))
    for i in range(max(b, start), min(b + batch_size, len(contents))):
      name = names[i] if names is not None else f"{prefix}_{i:06d}"
      writer.write(to_uint8(contents[i]), to_uint8(out[i - b]), type=type_name, name=str(name), index=i,
                   generator=f"cdd step {model.step}")
      written += 1
  writer.close()
  return written


def load(workdir, step=None) -> Transfer:
  """The `cdd` run in `workdir` (latest checkpoint, or `step`), ready to transfer degradations."""
  from jaxdeg.train import checkpoint as ckpt
  from jaxdeg.train import runs
  if not os.path.isdir(workdir):
    raise UserError(f"--workdir {workdir}: no such folder")
  config, _ = ckpt.restore_config(workdir, step)
  if config.get("task") != "cdd":
    raise UserError(f"{workdir}: a `{config.get('task')}` run, not a degradation model (task `cdd`)")
  config, task, state, step = runs.load_run(workdir, step)
  return Transfer(config, task, state, step)


# ------------------------------------------------------------------------------------------------
# command line


class _ArgumentError(Exception):
  pass


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    raise _ArgumentError(message)


def _images(folder, what):
  if not os.path.isdir(folder):
    raise UserError(f"{what} {folder}: no such folder")
  names = sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in EXTENSIONS)
  if not names:
    raise UserError(f"{what} {folder}: no images ({', '.join(EXTENSIONS)})")
  return names


def pair_folders(content_dir, reference_dir):
  """[(content path, reference path, output stem)] by matching stems, else by sorted order."""
  contents, references = _images(content_dir, "--content-dir"), _images(reference_dir, "--reference-dir")
  stem = lambda f: os.path.splitext(f)[0]
  by_stem = {stem(f): f for f in references}
  if all(stem(f) in by_stem for f in contents):
    pairs = [(f, by_stem[stem(f)]) for f in contents]
  elif len(contents) == len(references):
    pairs = list(zip(contents, references))
  else:
    raise UserError(f"cannot pair {len(contents)} content image(s) in {content_dir} with {len(references)} "
                    f"reference image(s) in {reference_dir}: give matching names or as many of each")
  return [(os.path.join(content_dir, c), os.path.join(reference_dir, r), stem(c)) for c, r in pairs]


def _output_paths(base, samples):
  root, ext = os.path.splitext(base)
  ext = ext or ".png"
  return [root + ext] if samples == 1 else [f"{root}_{i}{ext}" for i in range(samples)]


def _transfer_files(model, content, reference, output, samples, seed):
  outs = model.transfer(read_image(content), read_image(reference), key=seed, samples=samples)
  outs = [outs] if samples == 1 else list(outs)
  paths = _output_paths(output, samples)
  for path, image in zip(paths, outs):
    write_image(path, np.asarray(image))
  return paths


def _parse(argv):
  p = _Parser(prog="jaxdeg transfer", description=__doc__.splitlines()[0])
  p.add_argument("output", nargs="?", help="output image (single mode)")
  p.add_argument("--workdir", required=True, help="the trained `cdd` run")
  p.add_argument("--step", type=int)
  p.add_argument("--content", help="clean image that receives the degradation")
  p.add_argument("--reference", help="degraded image whose degradation is transferred")
  p.add_argument("--content-dir")
  p.add_argument("--reference-dir")
  p.add_argument("--output-dir")
  p.add_argument("--samples", type=int, default=1, help="noise draws per image")
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  single = [a.content, a.reference, a.output]
  batch = [a.content_dir, a.reference_dir, a.output_dir]
  if any(v is not None for v in single) and any(v is not None for v in batch):
    raise _ArgumentError("give either --content/--reference/OUTPUT or --content-dir/--reference-dir/--output-dir")
  if any(v is not None for v in batch) and not all(v is not None for v in batch):
    raise _ArgumentError("batch mode needs --content-dir, --reference-dir and --output-dir")
  if not any(v is not None for v in batch) and not all(v is not None for v in single):
    raise _ArgumentError("single mode needs --content, --reference and an output path")
  if a.samples < 1:
    raise _ArgumentError(f"--samples={a.samples}: must be at least 1")
  return a


def main(argv=None):
  try:
    a = _parse(sys.argv[1:] if argv is None else argv)
    if a.content is not None:
      for path in (a.content, a.reference):
        if not os.path.isfile(path):
          raise UserError(f"{path}: no such file")
      model = load(a.workdir, a.step)
      paths = _transfer_files(model, a.content, a.reference, a.output, a.samples, a.seed)
      print(f"wrote {', '.join(paths)} (step {model.step})")
      return 0
    pairs = pair_folders(a.content_dir, a.reference_dir)
    model = load(a.workdir, a.step)
    skipped, written = [], 0
    for content, reference, stem in pairs:
      try:
        _transfer_files(model, content, reference, os.path.join(a.output_dir, stem + ".png"), a.samples, a.seed)
        written += 1
      except UserError as e:  # an unreadable image: count it, list it, go on
        skipped.append(str(e))
  except (UserError, _ArgumentError) as e:
    print(f"jaxdeg: error: {e}", file=sys.stderr)
    return 2
  from jaxdeg.cli import finish_batch
  return finish_batch(f"transferred {written} pair(s) with step {model.step} into {a.output_dir}", skipped, "pair(s)")


if __name__ == "__main__":
  sys.exit(main())
