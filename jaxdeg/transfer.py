"""Degradation transfer with a trained universal degradation model: a `cdd` run, or the authors'
released weights (an official checkpoint file, e.g. `latest.pt`).

Python:

    from jaxdeg import transfer
    t = transfer.load("runs/cdd")                 # latest checkpoint (or step=N)
    t = transfer.load("weights/latest.pt")        # an official checkpoint (needs torch to read it)
    emb = t.embed(degraded)                       # the degradation of an image, [0, 1] in
    out = t.apply(clean, emb, key=0)              # ... put on a clean image, [0, 1] out
    outs = t.transfer(clean, degraded, key=0, samples=4)

Images are (H, W, 3) or (B, H, W, 3) floats in [0, 1], any size: they are padded (reflect) to the
multiple the model needs and cropped back. `apply` is differentiable with respect to the clean
image, so a trained model serves as a degradation operator inside a restorer's loss. One embedding
(batch 1) may be applied to a batch of clean images. `apply(..., tile=T)` makes full-resolution
frames in overlapping T² tiles (bounded memory; each tile draws its own noise, seams are a few
pixels wide), the way a film-grain model puts a reference frame's grain on a whole clean frame.

An official checkpoint does not record whether its run used the global and the local compressor
(`netCprs.enabled`, `netCprs_loc.enabled`): both are used unless `compress_global=False` /
`compress_local=False` (`--no-compress-global`, `--no-compress-local`) say otherwise.

Command line:

    jaxdeg transfer --workdir RUN --content clean.png --reference degraded.png OUT.png
        [--samples N] [--seed S] [--step K] [--tile T --overlap O]
    jaxdeg transfer --workdir RUN --content-dir CLEAN/ --reference-dir DEGRADED/ --output-dir OUT/
    jaxdeg transfer --weights latest.pt ...       (the same, with an official checkpoint)

Datasets of pairs for a restorer: `write_pairs(model, contents, references, folder)` puts each
reference's degradation on its content image and writes (clean, transferred) pairs as ArrayRecord
shards (`jaxdeg.data.records`), which `kind="array_record"` data sources read.

With N samples, OUT_0.png ... OUT_{N-1}.png (one file when N = 1). In batch mode, files pair by
matching names (stems) when every content image has a reference of the same stem, otherwise by
sorted order (the two folders must then hold as many images); outputs take the content's stem.
Unreadable images are skipped, counted and listed, and the exit status is then 1.
"""
import functools
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.data.images import EXTENSIONS, read_image, write_image
from jaxdeg.errors import UserError
from jaxdeg.models.cdd.ops import resize_bilinear_align_corners
from jaxdeg.models.restore.tiling import tiled_apply
from jaxdeg.tasks.cdd_ops import rbg_key
from jaxdeg.tasks.cdd import apply_embeddings, embed_images

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


# variables are arguments, not constants baked into the program; the model (hashable) is static, so
# models with the same fields share compiled programs across loads
@functools.partial(jax.jit, static_argnums=0)
def _embed(model, variables, y):
  return embed_images(model, variables, y)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, variables, x, embeddings, key):
  return apply_embeddings(model, variables, x, embeddings, rbg_key(key))


class Transfer:
  """A trained degradation model: `embed` a degraded image, `apply` the embedding to a clean one.

  `source` says where the weights came from ("cdd step N" for a run; the file for official weights)."""

  def __init__(self, model, variables, step, source):
    self.model, self.variables, self.step, self.source = model, variables, step, source
    self.multiple = COMPRESSOR_MULTIPLE if model.compress_local and model.use_iden else GENERATOR_MULTIPLE
    self._embed = functools.partial(_embed, model)
    self._apply = functools.partial(_apply, model)

  def embed(self, y):
    """Embeddings of degraded image(s) y in [0, 1]; the local map covers y's own (unpadded) area."""
    y, _ = _batched(y)
    h, w = y.shape[1:3]
    emb = self._embed(self.variables, _pad_to(y, self.multiple))
    if emb.local_embedding is not None:
      emb = emb.replace(local_embedding=emb.local_embedding[:, :math.ceil(h / 2), :math.ceil(w / 2)])
    return emb

  def apply(self, x, embeddings, key=0, clip=True, tile=None, overlap=64):
    """Clean image(s) x in [0, 1] carrying `embeddings`' degradation, in [0, 1].

    `key` (an int or a JAX key) draws the generator's noise. The local map is resized to x's
    half-resolution grid, as the model does for an embedding from an image of another size.
    With `tile`, each image is made in tile² pieces overlapping by `overlap` (multiples of 8)."""
    x, single = _batched(x)
    if tile is not None:
      out = self._apply_tiled(x, embeddings, _as_key(key), tile, overlap)
      out = jnp.clip(out, 0.0, 1.0) if clip else out
      return out[0] if single else out
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

  def _apply_tiled(self, x, embeddings, key, tile, overlap):
    """Per image: the clean image ‖ its local map (nearest-upsampled to full resolution) go through
    `tiled_apply` together, so every tile carries its own piece of the map; tile offsets are even,
    so taking every other pixel gives the piece back exactly. Tile batch i draws noise fold_in(key, i)."""
    if tile % GENERATOR_MULTIPLE or overlap % GENERATOR_MULTIPLE or not 0 <= overlap < tile:
      raise UserError(f"transfer: tile {tile} and overlap {overlap} must be multiples of {GENERATOR_MULTIPLE}, "
                      "overlap below tile")
    b, h, w = x.shape[:3]
    outs = []
    for i in range(b):
      pick = lambda a: a[i:i + 1] if a is not None and a.shape[0] == b else a  # image i's embedding
      emb = embeddings.replace(global_embedding=pick(embeddings.global_embedding),
                               local_embedding=pick(embeddings.local_embedding))
      local = emb.local_embedding
      stacked = x[i:i + 1]
      if local is not None:
        local = resize_bilinear_align_corners(local, (math.ceil(h / 2), math.ceil(w / 2)))
        local = jnp.repeat(jnp.repeat(local, 2, axis=1), 2, axis=2)[:, :h, :w]
        stacked = jnp.concatenate([stacked, local], axis=-1)
      calls = []

      def make(tiles, emb=emb):
        k = jax.random.fold_in(key, len(calls))
        calls.append(None)
        n = tiles.shape[0]
        local_tiles = tiles[:, ::2, ::2, 3:] if emb.local_embedding is not None else None
        piece = emb.replace(global_embedding=self._fit_batch(emb.global_embedding, n), local_embedding=local_tiles)
        return self._apply(self.variables, tiles[..., :3], piece, k)

      # blend only across a few pixels: averaging two tiles' independent noise would thin the grain
      outs.append(tiled_apply(make, stacked, tile=tile, overlap=overlap, align=GENERATOR_MULTIPLE,
                              margin=max(overlap // 2 - 2, 0)))
    return jnp.concatenate(outs)

  @staticmethod
  def _fit_batch(a, b):
    if a.shape[0] == b:
      return a
    if a.shape[0] == 1:
      return jnp.broadcast_to(a, (b,) + a.shape[1:])
    raise UserError(f"transfer: {a.shape[0]} embeddings for {b} images; give one, or one per image")

  def transfer(self, x, y, key=0, samples=1, tile=None, overlap=64):
    """y's degradation on x: x's shape when samples == 1, else a (samples, ...) stack of draws."""
    emb = self.embed(y)
    keys = jax.random.split(_as_key(key), samples) if samples > 1 else [_as_key(key)]
    outs = [self.apply(x, emb, k, tile=tile, overlap=overlap) for k in keys]
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
                   generator=model.source)
      written += 1
  writer.close()
  return written


def load(path, step=None, compress_global=True, compress_local=True) -> Transfer:
  """A degradation model ready to transfer: the `cdd` run in folder `path` (latest checkpoint, or
  `step`), or the official checkpoint file `path` (the compressor switches apply to it only)."""
  if os.path.isfile(path):
    return load_official(path, compress_global, compress_local)
  if not os.path.isdir(path):
    raise UserError(f"{path}: no such run folder or checkpoint file")
  return load_run(path, step)


def load_run(workdir, step=None) -> Transfer:
  from jaxdeg.train import checkpoint as ckpt
  from jaxdeg.tasks import runs
  if os.path.isfile(workdir):
    raise UserError(f"--workdir {workdir}: a file, not a jaxdeg run folder (an official checkpoint? give it "
                    "with --weights)")
  if not os.path.isdir(workdir):
    raise UserError(f"--workdir {workdir}: no such folder")
  config, _ = ckpt.restore_config(workdir, step)
  if config.get("task") != "cdd":
    raise UserError(f"{workdir}: a `{config.get('task')}` run, not a degradation model (task `cdd`)")
  config, task, state, step = runs.load_run(workdir, step)
  return Transfer(task.model, task.variables(state), step, f"cdd step {step}")


def load_official(path, compress_global=True, compress_local=True) -> Transfer:
  from jaxdeg.interop import cdd_torch
  parts, info = cdd_torch.read_checkpoint(path)
  model, variables = cdd_torch.import_parts(parts, compress_global=compress_global, compress_local=compress_local)
  step = info.get("global_step")
  return Transfer(model, variables, step, f"official checkpoint {os.path.basename(path)}"
                  + (f" (global step {step})" if step is not None else ""))


# ------------------------------------------------------------------------------------------------
# command line


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


def _transfer_files(model, content, reference, output, a):
  outs = model.transfer(read_image(content), read_image(reference), key=a.seed, samples=a.samples, tile=a.tile,
                        overlap=a.overlap)
  outs = [outs] if a.samples == 1 else list(outs)
  paths = _output_paths(output, a.samples)
  for path, image in zip(paths, outs):
    write_image(path, np.asarray(image))
  return paths


def _parse(argv):
  from jaxdeg.cli import ArgumentParser
  p = ArgumentParser(prog="jaxdeg transfer", description=__doc__.splitlines()[0])
  p.add_argument("output", nargs="?", help="output image (single mode)")
  p.add_argument("--workdir", help="the trained `cdd` run (a folder)")
  p.add_argument("--weights", help="an official checkpoint file (the authors' released weights)")
  p.add_argument("--step", type=int, help="with --workdir: that checkpoint instead of the latest")
  p.add_argument("--no-compress-global", action="store_true",
                 help="with --weights: the run did not use the global compressor (netCprs.enabled false)")
  p.add_argument("--no-compress-local", action="store_true",
                 help="with --weights: the run did not use the local compressor (netCprs_loc.enabled false)")
  p.add_argument("--content", help="clean image that receives the degradation")
  p.add_argument("--reference", help="degraded image whose degradation is transferred")
  p.add_argument("--content-dir")
  p.add_argument("--reference-dir")
  p.add_argument("--output-dir")
  p.add_argument("--samples", type=int, default=1, help="noise draws per image")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--tile", type=int, help="make the output in tiles of this side (full-resolution frames)")
  p.add_argument("--overlap", type=int, default=64, help="tile overlap (with --tile)")
  a = p.parse_args(argv)
  if (a.workdir is None) == (a.weights is None):
    raise UserError("give the model as --workdir RUN (a jaxdeg run) or --weights FILE (an official checkpoint)")
  if a.weights is not None and a.step is not None:
    raise UserError("--step picks a checkpoint of a run (--workdir); an official file holds one")
  if a.workdir is not None and (a.no_compress_global or a.no_compress_local):
    raise UserError("--no-compress-global/--no-compress-local describe an official checkpoint (--weights); "
                         "a run's config already says")
  single = [a.content, a.reference, a.output]
  batch = [a.content_dir, a.reference_dir, a.output_dir]
  if any(v is not None for v in single) and any(v is not None for v in batch):
    raise UserError("give either --content/--reference/OUTPUT or --content-dir/--reference-dir/--output-dir")
  if any(v is not None for v in batch) and not all(v is not None for v in batch):
    raise UserError("batch mode needs --content-dir, --reference-dir and --output-dir")
  if not any(v is not None for v in batch) and not all(v is not None for v in single):
    raise UserError("single mode needs --content, --reference and an output path")
  if a.samples < 1:
    raise UserError(f"--samples={a.samples}: must be at least 1")
  return a


def _model(a):
  if a.weights is not None:
    return load_official(a.weights, not a.no_compress_global, not a.no_compress_local)
  return load_run(a.workdir, a.step)


def main(argv=None):
  try:
    a = _parse(sys.argv[1:] if argv is None else argv)
    if a.content is not None:
      for path in (a.content, a.reference):
        if not os.path.isfile(path):
          raise UserError(f"{path}: no such file")
      model = _model(a)
      paths = _transfer_files(model, a.content, a.reference, a.output, a)
      print(f"wrote {', '.join(paths)} ({model.source})")
      return 0
    pairs = pair_folders(a.content_dir, a.reference_dir)
    model = _model(a)
    skipped, written = [], 0
    for content, reference, stem in pairs:
      try:
        _transfer_files(model, content, reference, os.path.join(a.output_dir, stem + ".png"), a)
        written += 1
      except UserError as e:  # an unreadable image: count it, list it, go on
        skipped.append(str(e))
  except UserError as e:
    print(f"jaxdeg: error: {e}", file=sys.stderr)
    return 2
  from jaxdeg.cli import finish_batch
  return finish_batch(f"transferred {written} pair(s) with {model.source} into {a.output_dir}", skipped, "pair(s)")


if __name__ == "__main__":
  sys.exit(main())
