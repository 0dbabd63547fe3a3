"""The universal degradation model (content–degradation disentanglement): encoders, compressors
and generator against a WGAN-GP critic, one jitted step.

Data: pairs (degraded y, clean x) with `config.data.degraded_key=True`, so every example also has
a second random crop of the same degraded image (the MoCo positive). Pairs come from paired
folders or from clean photos degraded in the pipeline (`degradations` on a source).

Each train step does, in one jitted function:
1. MoCo: the key encoder moves towards the query encoder (momentum 0.999) and encodes the key crops
   in training mode (its own BatchNorm statistics).
2. Generator step (encoders + compressors + generator, Adam with eps 1e-3; the compressors at
   `optimizer.compressor_learning_rate`, the rest at `optimizer.learning_rate`):
     l1_weight·L1(ŷ, y)  + colour_weight·colour(ŷ, y) + diversity_weight·diversity(ŷ, ŷ')
   + contrastive_weight·InfoNCE + rate_global_weight·R_g + rate_local_weight·R_l
   + aux_weight·quantile loss + gan_weight·(−α·D(ŷ))
   [+ dists_weight·DISTS(ŷ, y)] [+ lpips_weight·LPIPS(ŷ, y)],
   ŷ and ŷ' being two samples for the same input (one generator call on the batch twice over, so
   each half gets its own noise maps).
3. Critic step (its own Adam): α·(D(ŷ) − D(y)) + α·gp_weight·GP, on this step's ŷ.
   What D sees follows `config.critic.strategy` (the official ones: 'unconditioned', 'conditioned',
   'patched'; see _cdd_critic.py).
4. The global batch's keys enter the MoCo queue.
The paper's L_sim also has 10·DISTS (and LPIPS variants exist): they need ImageNet VGG weights,
which the user supplies as files (`loss.vgg16_weights` with `loss.dists_weights` and/or
`loss.lpips_weights`; see jaxdeg.models.perceptual). Without them those terms are off (a notice
is logged).

Eval (see `eval_step`): reproduction (ŷ from y's own embedding and x) and transfer (embedding from
another image carrying the same degradation), with the `clean` and `residual_paste` baselines;
PSNR, SSIM, MS-SSIM, and LPIPS / DISTS (lower is better) when `eval.vgg16_weights` with
`eval.lpips_weights` / `eval.dists_weights` name the weight files.

`config.init_from` may name an official checkpoint file (the authors' released weights) instead of
a run: `params_from_foreign_checkpoint` imports it (jaxdeg.interop.cdd_torch) after checking that
config.model describes the same network.
"""
import functools

import jax
import jax.numpy as jnp
import optax
from absl import logging

from jaxdeg import degrade
from jaxdeg.data import from_config
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr, ssim
from jaxdeg.models.cdd import Critic, DegradationModel
from jaxdeg.models.cdd import moco
from jaxdeg.tasks import _cdd_critic as critic_views
from jaxdeg.tasks import _cdd_losses as losses
from jaxdeg.tasks import _perceptual
from jaxdeg.tasks.cdd_ops import ms_ssim_fitting, rbg_key, residual_paste
from jaxdeg.tasks.ranges import to_image_range, to_model_range
from jaxdeg.tasks.base import Task
from jaxdeg.train import optimizers
from jaxdeg.train.state import TrainState

COMPRESSORS = ("global_compressor", "local_compressor")
METHODS = ("reproduction", "transfer", "clean", "residual_paste")
IMAGE_METRICS = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim_fitting}


def _compressor_labels(params):  # a prefix of the params tree: one label per top-level module
  return {name: "compressor" if name in COMPRESSORS else "other" for name in params}


def make_optimizers(opt, train):
  """(generator-side, critic) optax transforms (jaxdeg.train.optimizers): Adam with the paper's eps,
  the compressors in their own learning-rate group; the critic's from the `critic_*` fields."""
  groups = {"compressor": {"learning_rate": opt.compressor_learning_rate}, "other": {}}
  model_tx = optimizers.from_config(opt, train, groups=groups, labels=_compressor_labels)
  return model_tx, optimizers.from_config(opt, train, prefix="critic_")


def perceptual_losses(loss_config):
  """{'dists'/'lpips': distance} for the perceptual terms the config turns on (files read here)."""
  distances = _perceptual.load(loss_config, "config.loss", ("dists", "lpips"))
  if distances:
    logging.info("cdd loss: L1 + colour + diversity + contrastive + rates + GAN + %s",
                 _perceptual.describe(distances, loss_config))
  else:
    logging.info("cdd loss: L1 + colour + diversity + contrastive + rates + GAN; no DISTS/LPIPS term "
                 "(config.loss.dists_weights and lpips_weights are None)")
  return distances


def _check_train_sources(data):
  for i, raw in enumerate(data.get("sources", ())):
    spec = dict(raw)
    if spec.get("kind") in ("folder", "samples"):
      if not spec.get("degradations"):
        raise ConfigError(f"config.data.sources[{i}] ({spec['kind']}): clean images need 'degradations' "
                          "for the cdd task, which trains on (degraded, clean) pairs")
  if not data.get("degraded_key", False):
    raise ConfigError("config.data.degraded_key=False: the cdd task needs a second crop of each degraded "
                      "image as the MoCo positive; set it to True")


def _eval_is_procedural(data):
  """True when the eval sources are clean photos that `data.eval_degradations` degrades on the device."""
  specs = [dict(raw) for raw in data.get("eval_sources", ())]
  clean = [s.get("kind") in ("folder", "samples") and not s.get("degradations") for s in specs]
  if any(clean) and not all(clean):
    raise ConfigError("config.data.eval_sources: mix of clean and paired sources; the cdd task evaluates "
                      "either clean photos degraded with config.data.eval_degradations or pairs, not both")
  return bool(clean) and all(clean)


def model_fields(model_config):
  """DegradationModel keyword arguments from config.model. Runs saved before the two compressor
  switches have one `use_entropy`, which sets both. Lists (a config read back from JSON) become
  tuples: the model stays hashable, so jitted functions can take it as a static argument."""
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(model_config).items()}
  if "use_entropy" in kwargs:
    both = kwargs.pop("use_entropy")
    for name in ("compress_global", "compress_local"):
      if kwargs.setdefault(name, both) != both:
        raise ConfigError(f"config.model.use_entropy={both} contradicts config.model.{name}={kwargs[name]}; "
                          "use the two switches only")
  return kwargs


def embed_images(model, variables, y):
  """Embeddings of degraded y in [0, 1] (inference mode: running BatchNorm statistics, rounding)."""
  return model.apply(variables, to_model_range(y), False, method=DegradationModel.embed)


def apply_embeddings(model, variables, x, embeddings, key):
  """x in [0, 1] carrying `embeddings`' degradation, in [0, 1] (unclipped: the model's output)."""
  out = model.apply({"params": variables["params"]}, to_model_range(x), embeddings,
                    method=DegradationModel.transfer, rngs={"noise": key})
  return to_image_range(out)


class CddTask(Task):

  def __init__(self, config):
    super().__init__(config)
    try:
      self.model = DegradationModel(**model_fields(config.model))
    except TypeError as e:
      raise ConfigError(f"config.model: {e} (fields are those of jaxdeg.models.cdd.DegradationModel)") from None
    self.critic = Critic(config.critic.width)
    self.critic_strategy = config.critic.get("strategy", "unconditioned")
    if self.critic_strategy not in critic_views.STRATEGIES:
      raise ConfigError(f"config.critic.strategy={self.critic_strategy!r}: must be one of "
                        f"{', '.join(critic_views.STRATEGIES)}")
    if self.critic_strategy == "patched" and config.data.crop not in (128, 256, 512):
      raise ConfigError(f"config.critic.strategy='patched' judges crop/4 patches with a critic that needs "
                        f"32, 64 or 128 pixels: config.data.crop={config.data.crop} must be 128, 256 or 512")
    self.model_tx, self.critic_tx = make_optimizers(config.optimizer, config.train)
    self.loss = config.loss
    self.perceptual = perceptual_losses(config.loss)
    self.eval_perceptual = _perceptual.load(config.eval, "config.eval", ("lpips", "dists"))
    _check_train_sources(config.data)
    self.procedural_eval = _eval_is_procedural(config.data)
    self.eval_spec = None
    if self.procedural_eval:
      self.eval_spec = [dict(s) for s in config.data.get("eval_degradations", ())]
      if not self.eval_spec:
        raise ConfigError("config.data.eval_sources are clean images but config.data.eval_degradations is "
                          "empty: name the degradation that reference and target share")
      degrade.parse_spec(self.eval_spec)

  # ------------------------------------------------------------------------------------------
  # state

  def init_state(self, rng):
    k_model, k_noise, k_critic, k_queue, rng = jax.random.split(rng, 5)
    crop = self.config.data.crop
    image = jnp.zeros((1, crop, crop, 3), jnp.float32)
    variables = self.model.init({"params": rbg_key(k_model), "noise": rbg_key(k_noise)}, image, image)
    side = critic_views.critic_size(self.critic_strategy, crop)
    critic_input = jnp.zeros((1, side, side, critic_views.in_channels(self.critic_strategy)), jnp.float32)
    critic_params = self.critic.init(rbg_key(k_critic), critic_input)["params"]
    params = {"model": variables["params"], "critic": critic_params}
    queue = moco.init_queue(rbg_key(k_queue), self.config.moco.queue_size, self.model.global_dim)
    model_state = {
        "batch_stats": variables["batch_stats"],
        # MoCo starts its key encoder as a copy of the query encoder
        "key_encoder": {"params": variables["params"]["global_encoder"],
                        "batch_stats": variables["batch_stats"]["global_encoder"]},
        "queue": {"keys": queue.keys, "ptr": queue.ptr},
    }
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state={"model": self.model_tx.init(params["model"]),
                                 "critic": self.critic_tx.init(critic_params)},
                      model_state=model_state, ema_params=None, rng=rng)

  # ------------------------------------------------------------------------------------------
  # training

  def encode_keys(self, key_encoder, query_params, y_key):
    """MoCo's key path: momentum update, then the keys in training mode (no gradient)."""
    key_params = moco.momentum_update(key_encoder["params"], query_params, self.config.moco.momentum)
    codes, updates = self.model.apply(
        {"params": {"global_encoder": key_params}, "batch_stats": {"global_encoder": key_encoder["batch_stats"]}},
        y_key, True, method=DegradationModel.encode_global, mutable=["batch_stats"])
    return jax.lax.stop_gradient(codes), {"params": key_params,
                                          "batch_stats": updates["batch_stats"]["global_encoder"]}

  def generator_loss(self, model_params, critic_params, batch_stats, x, y, key_codes, queue, keys):
    """(total, (terms, new batch_stats, ŷ, normalised keys)) for the encoders + generator."""
    k_quantize, k_noise, k_view = keys
    w = self.loss
    emb, updates = self.model.apply({"params": model_params, "batch_stats": batch_stats}, y, True,
                                    method=DegradationModel.embed, rngs={"quantize": k_quantize},
                                    mutable=["batch_stats"])
    # both samples in one generator call (half the program to compile); each half draws its own noise
    samples = self.model.apply({"params": model_params}, _twice(x), _repeat_embeddings(emb),
                               method=DegradationModel.transfer, rngs={"noise": k_noise})
    y_hat, y_hat2 = jnp.split(samples, 2, axis=0)
    logits, normalised_keys = moco.contrastive_logits(emb.global_code, key_codes, queue,
                                                      self.config.moco.temperature)
    d_fake = self.critic.apply({"params": critic_params},
                               critic_views.generator_input(self.critic_strategy, k_view, x, y, y_hat))
    terms = {
        "l1": losses.l1_loss(y_hat, y),
        "colour": losses.colour_loss(y_hat, y),
        "diversity": losses.diversity_loss(y_hat, y_hat2),
        "contrastive": moco.contrastive_loss(logits),
        "rate_global": emb.rate_global,
        "rate_local": emb.rate_local,
        "aux": emb.aux_loss,
        "gan": -w.gan_alpha * jnp.mean(d_fake),
    }
    weights = {"l1": w.l1_weight, "colour": w.colour_weight, "diversity": w.diversity_weight,
               "contrastive": w.contrastive_weight, "rate_global": w.rate_global_weight,
               "rate_local": w.rate_local_weight, "aux": w.aux_weight, "gan": w.gan_weight}
    for name, distance in self.perceptual.items():  # on [0, 1] images; ŷ unclipped, to keep gradients
      terms[name] = jnp.mean(distance(to_image_range(y_hat), to_image_range(y)))
      weights[name] = w[f"{name}_weight"]
    total = sum(weights[k] * terms[k] for k in terms)
    terms["contrastive_accuracy"] = jnp.mean(jnp.argmax(logits, axis=-1) == 0)
    return total, (terms, updates["batch_stats"], y_hat, normalised_keys)

  def train_step(self, state, batch):
    x, y, y_key = (to_model_range(batch[k]) for k in ("clean", "degraded", "degraded_key"))
    k_quantize, k_noise, k_gp = (rbg_key(k) for k in jax.random.split(state.step_rng(), 3))
    # what the critic sees (patch positions; unused by the other strategies)
    k_view_generator, k_view_critic = jax.random.split(jax.random.fold_in(state.step_rng(), 1))
    params, ms = state.params, state.model_state
    queue = moco.Queue(ms["queue"]["keys"], ms["queue"]["ptr"])
    key_codes, key_encoder = self.encode_keys(ms["key_encoder"], params["model"]["global_encoder"], y_key)

    grad_fn = jax.value_and_grad(self.generator_loss, has_aux=True)
    (loss, (terms, batch_stats, y_hat, new_keys)), grads = grad_fn(
        params["model"], params["critic"], ms["batch_stats"], x, y, key_codes, queue,
        (k_quantize, k_noise, k_view_generator))
    updates, model_opt = self.model_tx.update(grads, state.opt_state["model"], params["model"])
    model_params = optax.apply_updates(params["model"], updates)

    # the critic judges this step's ŷ, made before the generator's update (as the official loop does)
    critic_fn = lambda p: (lambda images: self.critic.apply({"params": p}, images))
    real, fake = critic_views.critic_inputs(self.critic_strategy, k_view_critic, x, y, jax.lax.stop_gradient(y_hat))
    critic_grad_fn = jax.value_and_grad(
        lambda p: losses.critic_loss(critic_fn(p), real, fake, k_gp, self.loss.gan_alpha, self.loss.gp_weight),
        has_aux=True)
    (_, critic_terms), critic_grads = critic_grad_fn(params["critic"])
    critic_updates, critic_opt = self.critic_tx.update(critic_grads, state.opt_state["critic"], params["critic"])
    critic_params = optax.apply_updates(params["critic"], critic_updates)

    queue = moco.enqueue(queue, new_keys)
    state = state.replace(
        step=state.step + 1, params={"model": model_params, "critic": critic_params},
        opt_state={"model": model_opt, "critic": critic_opt},
        model_state={"batch_stats": batch_stats, "key_encoder": key_encoder,
                     "queue": {"keys": queue.keys, "ptr": queue.ptr}})
    metrics = {"loss": loss, **terms, **critic_terms, "grad_norm": optax.global_norm(grads),
               "critic_grad_norm": optax.global_norm(critic_grads)}
    return state, metrics

  # ------------------------------------------------------------------------------------------
  # inference and evaluation

  def variables(self, state):
    return {"params": state.params["model"], "batch_stats": state.model_state["batch_stats"]}

  def embed(self, variables, y):
    return embed_images(self.model, variables, y)

  def apply(self, variables, x, embeddings, key):
    return apply_embeddings(self.model, variables, x, embeddings, key)

  def params_from_foreign_checkpoint(self, path, state):
    from jaxdeg.tasks._cdd_foreign import state_from_official
    return state_from_official(self, path, state)

  def eval_pairs(self, batch):
    """(clean x, degraded target y, reference r): r carries y's degradation on another image.

    Procedural eval: example i's degradation is drawn with a key from its index and applied with
    that same key to x_i (giving y_i) and to the previous valid example's clean image (giving r_i;
    the first example takes the last valid one), so r and y share every degradation parameter and
    mask. Their random fields (noise, grain, particles) are independent draws, as in two real
    photos with one degradation, unless `eval.shared_fields` (then a residual paste copies y's
    noise exactly). Paired eval: r_i is the previous example's degraded image, which shares y_i's
    degradation only when the source's pairs all carry the same one (e.g. one grain table)."""
    mask = batch["mask"]
    n_valid = jnp.maximum(jnp.sum(mask > 0).astype(jnp.int32), 1)
    idx = jnp.arange(mask.shape[0])
    partner = jnp.where(idx > 0, idx - 1, n_valid - 1)
    if not self.procedural_eval:
      return batch["clean"], batch["degraded"], batch["degraded"][partner]
    base = jax.random.PRNGKey(self.config.seed + 1)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(batch["index"])
    clean = batch["image"]
    degraded = lambda images, other_fields: jax.vmap(lambda k, im: jnp.clip(
        degrade.apply_spec(k, im, self.eval_spec, other_fields=other_fields)[0], 0.0, 1.0))(keys, images)
    shared = self.config.eval.get("shared_fields", False)
    return clean, degraded(clean, 0), degraded(clean[partner], 0 if shared else 1)

  def eval_step(self, state, batch):
    x, y, reference = self.eval_pairs(batch)
    variables = self.variables(state)
    noise = rbg_key(jax.random.PRNGKey(self.config.seed + 2))
    # reproduction and transfer in one call: embeddings of [y; r], both put on [x; x]
    emb = self.embed(variables, jnp.concatenate([y, reference]))
    made = jnp.clip(self.apply(variables, _twice(x), emb, noise), 0.0, 1.0)
    reproduction, transfer = jnp.split(made, 2, axis=0)
    paste = residual_paste(x, reference, self.config.eval.paste_sigma)
    stacked = jnp.stack([reproduction, transfer, x, paste])  # METHODS order; metrics batch over both axes
    metrics = {}
    for name, fn in IMAGE_METRICS.items():
      values = fn(stacked, jnp.broadcast_to(y, stacked.shape))
      metrics.update({f"{method}_{name}": values[i] for i, method in enumerate(METHODS)})
    for name, distance in self.eval_perceptual.items():  # all methods in one trunk call
      values = distance(stacked.reshape((-1,) + y.shape[1:]), jnp.tile(y, (len(METHODS), 1, 1, 1)))
      metrics.update({f"{method}_{name}": v for method, v in zip(METHODS, jnp.split(values, len(METHODS)))})
    out = {"metrics": metrics,
           "images": {"content": x, "reference": reference, "transfer": transfer, "truth": y}}
    if not self.procedural_eval:
      out["groups"] = {"type": batch["type"], "test_set": batch["source"]}
    return out

  def group_names(self):
    if self.procedural_eval:
      return {}
    return {"type": from_config.type_names(self.config.data),
            "test_set": from_config.source_labels(self.config.data, "eval_sources")}

  def train_data(self):
    return from_config.train_data(self.config)

  def eval_data(self):
    return self._eval_data

  @functools.cached_property
  def _eval_data(self):
    return from_config.eval_data(self.config)


def _twice(a):
  return jnp.concatenate([a, a], axis=0)


def _repeat_embeddings(emb):
  """Embeddings for the batch twice over (global and local parts; the rest is per batch)."""
  local = None if emb.local_embedding is None else _twice(emb.local_embedding)
  return emb.replace(global_embedding=_twice(emb.global_embedding), local_embedding=local)


TASK = CddTask
