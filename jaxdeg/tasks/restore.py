"""Image restoration: a restorer learns to undo degradations made on the fly on the device.

Clean crops come from the data pipeline; each step degrades them with the stages of
`config.data.degradations` (jaxdeg.degrade, one random intensity per image and stage), so the
CPU never becomes the bottleneck. Loss: L1. Eval: PSNR of input and output against the target.
"""
import jax
import jax.numpy as jnp
import optax

from jaxdeg import degrade
from jaxdeg.data import pipeline, samples
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr
from jaxdeg.models.restore import NAFNet
from jaxdeg.tasks.base import Task
from jaxdeg.train.state import TrainState, apply_gradients

MODELS = {"nafnet": NAFNet}


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
    # A jaxdeg.degrade spec: stages in order, each with an intensity range and probability.
    self.spec = [dict(stage) for stage in config.data.degradations]
    if not self.spec:
      raise ConfigError("config.data.degradations is empty: nothing for the restorer to undo")
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

  def train_step(self, state, batch):
    clean = batch["image"]
    degraded = self.degrade_batch(jax.random.split(state.step_rng(), clean.shape[0]), clean)

    def loss_fn(params):
      restored = self.model.apply({"params": params}, degraded)
      return jnp.mean(jnp.abs(restored - clean))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    state = apply_gradients(state, grads, self.tx, ema_decay=self.config.train.ema_decay)
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads)}

  def eval_step(self, state, batch):
    clean = batch["image"]
    # Keys from each example's index: the same degradations on every run and every mesh.
    eval_key = jax.random.PRNGKey(self.config.seed + 1)
    keys = jax.vmap(lambda i: jax.random.fold_in(eval_key, i))(batch["index"])
    degraded = self.degrade_batch(keys, clean)
    params = state.ema_params if state.ema_params is not None else state.params
    restored = jnp.clip(self.model.apply({"params": params}, degraded), 0.0, 1.0)
    return {"metrics": {"psnr_input": psnr(degraded, clean), "psnr_output": psnr(restored, clean)},
            "images": {"input": degraded, "output": restored, "target": clean}}

  def train_data(self):
    d = self.config.data
    return pipeline.train_dataset(samples.SamplePhotos(d.train_photos), crop=d.crop,
                                  global_batch_size=self.config.train.batch_size, seed=self.config.seed,
                                  worker_count=d.worker_count)

  def eval_data(self):
    d = self.config.data
    return pipeline.eval_dataset(samples.SamplePhotos(d.eval_photos), crop=d.eval_crop,
                                 global_batch_size=self.config.eval.batch_size)


TASK = RestoreTask
