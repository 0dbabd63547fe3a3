"""Image restoration: a restorer (NAFNet or PromptIR) learns to map degraded images to clean ones.

Two ways to get pairs:
- `config.data.sources` (any mixture of jaxdeg.data.from_config sources: real paired folders,
  TFDS, GenDeg ArrayRecord shards, procedural degradations made in the pipeline): batches carry
  'clean' and 'degraded'; `config.data.eval_sources` likewise, and evaluation reports every
  metric per degradation type and per test set.
- otherwise, clean crops of `config.data.train_photos` degraded on the device each step with the
  stages of `config.data.degradations` (jaxdeg.degrade, one random intensity per image and stage),
  so the CPU never becomes the bottleneck.
Loss: L1 (+ `config.loss.fft_weight` × L1 of the 2-D FFTs). Eval: PSNR and SSIM of input and output
(skimage defaults, as the all-in-one papers report them), and LPIPS (VGG, v0.1) of input and output
when `config.eval.lpips_weights` and `config.eval.vgg16_weights` name the weight files (see
jaxdeg.models.perceptual); FID of inputs and outputs against the targets (overall, per type and
per test set) when `config.eval.inception_weights` names pytorch-fid's Inception weights. Eval images are centre crops of `config.data.eval_crop`, in batches; with
`config.eval.full_resolution` every eval image is restored at its own size instead, in overlapping
tiles of `config.eval.tile`² (`eval_full_resolution`), as the benchmark protocols measure.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdeg import degrade
from jaxdeg.data import from_config, pipeline, samples
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr, ssim
from jaxdeg.models import perceptual
from jaxdeg.models.restore import NAFNet, PromptIR
from jaxdeg.models.restore.tiling import tiled_apply
from jaxdeg.tasks import _perceptual
from jaxdeg.tasks.base import Task
from jaxdeg.train import optimizers
from jaxdeg.train.defaults import TILING
from jaxdeg.train.distributed import fetch_global
from jaxdeg.train.state import TrainState, apply_gradients

MODELS = {"nafnet": NAFNet, "promptir": PromptIR}


def tile_settings(section, align, where="config.eval"):
  """(tile, overlap, tiles per call) from `section`, checked against the restorer's `align`."""
  tile, overlap, batch = (section.get(k, TILING[k]) for k in ("tile", "tile_overlap", "tile_batch"))
  if not isinstance(tile, int) or tile <= 0 or tile % align:
    raise ConfigError(f"{where}.tile={tile!r} must be a positive multiple of {align} (the restorer's "
                      "downsampling factor)")
  if not isinstance(overlap, int) or not 0 <= overlap < tile:
    raise ConfigError(f"{where}.tile_overlap={overlap!r} must be in [0, {where}.tile={tile}): tiles must "
                      "advance")
  if not isinstance(batch, int) or batch < 1:
    raise ConfigError(f"{where}.tile_batch={batch!r} must be a positive number of tiles per call")
  return tile, overlap, batch


class RestoreTask(Task):

  def __init__(self, config):
    super().__init__(config)
    kwargs = dict(config.model)
    name = kwargs.pop("name", "nafnet")
    if name not in MODELS:
      raise ConfigError(f"config.model.name={name!r}: restorers are {', '.join(MODELS)}")
    self.model = MODELS[name](**kwargs)
    # AdamW, warm-up then cosine decay over the run's optimizer updates, clipped (config.optimizer)
    self.tx = optimizers.from_config(config.optimizer, config.train)
    self.paired = bool(config.data.get("sources"))
    self.fft_weight = float(config.get("loss", {}).get("fft_weight", 0.0))
    self.eval_lpips = _perceptual.load(config.eval, "config.eval", ("lpips",)).get("lpips")
    self.eval_inception = _perceptual.load_inception(config.eval, "config.eval")
    # tile offsets on the restorer's downsampling grid, where tiling matches whole-image inference
    self.align = 2 ** len(self.model.enc_blocks) if isinstance(self.model, NAFNet) else 8
    if config.eval.get("full_resolution", False):
      self.tiling = tile_settings(config.eval, self.align)
    if self.paired:
      self.spec = None
      return
    # A jaxdeg.degrade spec: stages in order, each with an intensity range and probability.
    self.spec = [dict(stage) for stage in config.data.get("degradations", ())]
    if not self.spec:
      raise ConfigError("config.data.degradations is empty and config.data.sources is not set: "
                        "nothing for the restorer to undo")
    degrade.parse_spec(self.spec)  # bad names or ranges fail here, before training starts

  def init_state(self, rng):
    init_rng, rng = jax.random.split(rng)
    crop = self.config.data.crop
    params = self.model.init(init_rng, jnp.zeros((1, crop, crop, 3), jnp.float32))["params"]
    return TrainState.create(params=params, tx=self.tx, rng=rng, ema=self.config.train.ema_decay > 0)

  def degrade_one(self, key, clean):
    return degrade.apply_spec(key, clean, self.spec)[0]

  def degrade_batch(self, keys, clean):
    return jax.vmap(self.degrade_one)(keys, clean)

  def _pair(self, batch, keys_from):
    if self.paired:
      return batch["clean"], batch["degraded"]
    clean = batch["image"]
    return clean, self.degrade_batch(keys_from(clean.shape[0]), clean)

  def loss(self, restored, clean):
    loss = jnp.mean(jnp.abs(restored - clean))
    if self.fft_weight:
      spectrum = lambda x: jnp.fft.rfft2(x, axes=(1, 2))
      loss += self.fft_weight * jnp.mean(jnp.abs(spectrum(restored) - spectrum(clean)))
    return loss

  def train_step(self, state, batch):
    clean, degraded = self._pair(batch, lambda n: jax.random.split(state.step_rng(), n))

    def loss_fn(params):
      return self.loss(self.model.apply({"params": params}, degraded), clean)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    state = apply_gradients(state, grads, self.tx, ema_decay=self.config.train.ema_decay)
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads)}

  def _eval_pair(self, batch):
    # Keys from each example's index: the same degradations on every run, every mesh, and at full
    # resolution as in crops.
    eval_key = jax.random.PRNGKey(self.config.seed + 1)
    return self._pair(batch, lambda n: jax.vmap(lambda i: jax.random.fold_in(eval_key, i))(batch["index"]))

  def _eval_outputs(self, degraded, restored, clean):
    """eval_step's metrics and images for (B, H, W, 3) inputs, outputs and targets."""
    restored = jnp.clip(restored, 0.0, 1.0)
    out = {"metrics": {"psnr_input": psnr(degraded, clean), "psnr_output": psnr(restored, clean),
                       "ssim_input": ssim(degraded, clean), "ssim_output": ssim(restored, clean)},
           "images": {"input": degraded, "output": restored, "target": clean}}
    if self.eval_lpips is not None:  # input and output in one trunk call
      both = self.eval_lpips(jnp.concatenate([degraded, restored]), jnp.concatenate([clean, clean]))
      out["metrics"]["lpips_input"], out["metrics"]["lpips_output"] = jnp.split(both, 2)
    return out

  def eval_features(self, images):
    """FID's Inception features of one eval batch's images ({target, input, output} -> (B, 2048)),
    or None without `eval.inception_weights`; the trainer turns them into FIDs. Outside the eval
    step, so the network's 24 M params are arguments of its own jitted function (not constants of
    every eval step), and, resized to 299² first, it compiles once for images of any size."""
    if self.eval_inception is None:
      return None
    x = _inception_input(jnp.concatenate([images["target"], images["input"], images["output"]]))
    return dict(zip(("target", "input", "output"), jnp.split(self.eval_inception(x), 3)))

  def _groups(self, batch):
    return {"type": batch["type"], "test_set": batch["source"]} if self.paired else {}

  def eval_step(self, state, batch):
    clean, degraded = self._eval_pair(batch)
    out = self._eval_outputs(degraded, self.model.apply({"params": state.inference_params()}, degraded), clean)
    if self.paired:
      out["groups"] = self._groups(batch)
    return out

  full_resolution_eval = True

  def eval_full_resolution(self, state):
    """eval_step's output (batches of one) for every eval image at its own size, restored in
    overlapping tiles (jaxdeg.models.restore.tiling, as `jaxdeg restore` does); device arrays.

    Every process evaluates every image on its own devices, with the params replicated on them and
    each call's tiles split over them: images differ in size, so they do not form global batches,
    and no process waits for another's share. The restorer compiles once per tile shape (tiles
    are clipped only to images smaller than a tile); blending and metrics once per image size.
    """
    tile, overlap, per_call = getattr(self, "tiling", None) or tile_settings(self.config.eval, self.align)
    fns = self._full_resolution_functions
    per_call = -(-per_call // fns["devices"]) * fns["devices"]
    params = _replicate(state.inference_params(), fns["replicated"])
    home = fns["home"]

    def restore_tiles(tiles):
      n = tiles.shape[0]  # an image with fewer tiles than a call takes: pad, one batch shape
      tiles = jnp.pad(tiles, ((0, per_call - n), (0, 0), (0, 0), (0, 0)))
      return jax.device_put(fns["apply"](params, jax.device_put(tiles, fns["split"])), home)[:n]

    for example in self.eval_images():
      clean = jax.device_put(example["clean" if self.paired else "image"][None], home)
      if self.paired:
        degraded = jax.device_put(example["degraded"][None], home)
      else:
        degraded = fns["degrade"](jax.device_put(example["index"][None], home), clean)
      restored = tiled_apply(restore_tiles, degraded, tile=tile, overlap=overlap, batch_tiles=per_call,
                             align=self.align)
      out = fns["outputs"](degraded, restored, clean)
      if self.paired:
        out["groups"] = self._groups({k: example[k][None] for k in ("type", "source")})
      yield out

  @functools.cached_property
  def _full_resolution_functions(self):
    # jitted once per task: evaluations during training reuse the compiled functions
    devices = jax.local_devices()
    mesh = Mesh(np.array(devices), ("tiles",))
    replicated, split = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("tiles"))
    return dict(
        devices=len(devices), home=devices[0], replicated=replicated, split=split,
        apply=jax.jit(lambda p, x: self.model.apply({"params": p}, x), in_shardings=(replicated, split)),
        degrade=jax.jit(lambda index, clean: self._eval_pair({"image": clean, "index": index})[1]),
        outputs=jax.jit(self._eval_outputs))

  def group_names(self):
    if not self.paired:
      return {}
    return {"type": from_config.type_names(self.config.data),
            "test_set": from_config.source_labels(self.config.data, "eval_sources")}

  def train_data(self):
    d = self.config.data
    if self.paired:
      return from_config.train_data(self.config)
    return pipeline.train_dataset(samples.SamplePhotos(d.train_photos), crop=d.crop,
                                  global_batch_size=self.config.train.batch_size, seed=self.config.seed,
                                  worker_count=d.worker_count)

  def eval_data(self):
    d = self.config.data
    if self.paired:
      return self._paired_eval_data
    return pipeline.eval_dataset(samples.SamplePhotos(d.eval_photos), crop=d.eval_crop,
                                 global_batch_size=self.config.eval.batch_size)

  def eval_images(self):
    """Every eval example uncropped, one at a time, with eval_data's 'index' (full resolution)."""
    if self.paired:
      return self._paired_eval_images
    return pipeline.eval_examples(samples.SamplePhotos(self.config.data.eval_photos))

  @functools.cached_property
  def _paired_eval_data(self):
    return from_config.eval_data(self.config)

  @functools.cached_property
  def _paired_eval_images(self):
    return from_config.eval_data(self.config, full_resolution=True)


_inception_input = jax.jit(perceptual.inception.resize_bilinear)


def _replicate(tree, sharding):
  """A full copy of `tree` on each device of `sharding` (params sharded over any mesh)."""
  if jax.process_count() > 1:  # shards on other hosts cannot be copied device to device
    tree = fetch_global(tree)
  return jax.device_put(tree, sharding)


TASK = RestoreTask
