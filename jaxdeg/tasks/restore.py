"""Image restoration: a restorer (NAFNet or PromptIR) learns to map degraded images to clean ones.

Two ways to get pairs:
- `config.data.sources` (any mixture of jaxdeg.data.from_config sources: real paired folders,
  TFDS, GenDeg ArrayRecord shards, procedural degradations made in the pipeline): batches carry
  'clean' and 'degraded'; `config.data.eval_sources` likewise, and evaluation reports every
  metric per degradation type and per test set.
- otherwise, clean crops of `config.data.train_photos` degraded on the device each step with the
  stages of `config.data.degradations` (jaxdeg.degrade, one random intensity per image and stage),
  so the CPU never becomes the bottleneck.
Loss: L1 (+ `config.loss.fft_weight` × L1 of the 2-D FFTs). Eval: PSNR of input and output, SSIM of
the output (skimage defaults, as the all-in-one papers report them), and LPIPS (VGG, v0.1) of input
and output when `config.eval.lpips_weights` and `config.eval.vgg16_weights` name the weight files
(see jaxdeg.models.perceptual).
"""
import jax
import jax.numpy as jnp
import optax

from jaxdeg import degrade
from jaxdeg.data import from_config, pipeline, samples
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr, ssim
from jaxdeg.models.restore import NAFNet, PromptIR
from jaxdeg.tasks import _perceptual
from jaxdeg.tasks.base import Task
from jaxdeg.train.state import TrainState, apply_gradients

MODELS = {"nafnet": NAFNet, "promptir": PromptIR}


def make_optimizer(opt, total_steps):
  """AdamW with linear warm-up then cosine decay, and global-norm clipping."""
  warmup = min(opt.warmup_steps, max(total_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, warmup, max(total_steps, warmup + 1),
                                                end_value=opt.learning_rate * opt.final_lr_fraction)
  return optax.chain(optax.clip_by_global_norm(opt.grad_clip),
                     optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay))


class RestoreTask(Task):

  def __init__(self, config):
    super().__init__(config)
    kwargs = dict(config.model)
    name = kwargs.pop("name", "nafnet")
    if name not in MODELS:
      raise ConfigError(f"config.model.name={name!r}: restorers are {', '.join(MODELS)}")
    self.model = MODELS[name](**kwargs)
    self.tx = make_optimizer(config.optimizer, config.train.steps)
    self.paired = bool(config.data.get("sources"))
    self.fft_weight = float(config.get("loss", {}).get("fft_weight", 0.0))
    self.eval_lpips = _perceptual.load(config.eval, "config.eval", ("lpips",)).get("lpips")
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

  def eval_step(self, state, batch):
    # Keys from each example's index: the same degradations on every run and every mesh.
    eval_key = jax.random.PRNGKey(self.config.seed + 1)
    clean, degraded = self._pair(batch, lambda n: jax.vmap(lambda i: jax.random.fold_in(eval_key, i))(batch["index"]))
    params = state.ema_params if state.ema_params is not None else state.params
    restored = jnp.clip(self.model.apply({"params": params}, degraded), 0.0, 1.0)
    out = {"metrics": {"psnr_input": psnr(degraded, clean), "psnr_output": psnr(restored, clean),
                       "ssim_output": ssim(restored, clean)},
           "images": {"input": degraded, "output": restored, "target": clean}}
    if self.eval_lpips is not None:  # input and output in one trunk call
      both = self.eval_lpips(jnp.concatenate([degraded, restored]), jnp.concatenate([clean, clean]))
      out["metrics"]["lpips_input"], out["metrics"]["lpips_output"] = jnp.split(both, 2)
    if self.paired:
      out["groups"] = {"type": batch["type"], "test_set": batch["source"]}
    return out

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
      if not hasattr(self, "_eval"):
        self._eval = from_config.eval_data(self.config)
      return self._eval
    return pipeline.eval_dataset(samples.SamplePhotos(d.eval_photos), crop=d.eval_crop,
                                 global_batch_size=self.config.eval.batch_size)


TASK = RestoreTask
