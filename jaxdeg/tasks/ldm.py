"""GenDeg's conditional latent diffusion model: puts a chosen degradation, at a chosen intensity
(μ, σ), on a clean image.

Per step: pairs (real, or clean images degraded on the device with a random GenDeg type and
intensity); μ/σ of |clean − degraded| measured on the device (`jaxdeg.degrade.intensity`); the
frozen VAE encodes the clean image to its posterior mean (unscaled: the image condition) and the
degraded image to a posterior sample × `vae.scaling_factor` (the diffusion target); GenDeg's
condition dropout; ε-prediction MSE (or v) on the noisy target ‖ clean latent, with the
degradation context (learned type tokens standing in for CLIP text, plus the μ/σ projections)
as cross-attention context. AdamW at a constant learning rate, 10× on the two new projection
layers; EMA of the trained params.

The frozen VAE comes from a `vae` task run (`vae.workdir`) or a diffusers folder
(`vae.diffusers_path`). Its weights are read once, when a fresh state is initialised, and then
live in the train state's `model_state['vae']`: every checkpoint carries them (sampling needs no
other weights; the VAE's architecture is still read from that run's config or config.json).

With `data.latent_cache` set, training reads pairs the VAE encoded beforehand
(`--mode=cache_latents`, see `_ldm_latent_cache`) and the step skips the encoder.

Not implemented: precomputed text embeddings (the type tokens always stand in for them) and
gradient accumulation.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from absl import logging

from jaxdeg import diffusion
from jaxdeg.data import from_config
from jaxdeg.degrade import intensity
from jaxdeg.diffusion import guidance, parametrization
from jaxdeg.errors import ConfigError
from jaxdeg.models.ldm import AutoencoderKL, DegradationContext, UNet
from jaxdeg.models.ldm.conditioning import dropout_masks, null_inputs
from jaxdeg.models.ldm.vae import sample_posterior
from jaxdeg.tasks._gendeg_data import (PairMaker, frozen_in_init, inference_params, init_key, load_state,
                                       module_kwargs, saved_config, to_image_range, to_model_range)
from jaxdeg.tasks.base import Task
from jaxdeg.train.state import TrainState, apply_gradients

# The two layers GenDeg adds to SD's UNet: Linear(129 → L) for μ and σ, and Linear(D + 2 → D).
NEW_LAYERS = ("stats_proj", "cc_projection")


def new_layer_labels(params):
  """'new_layers' for parameters of the context's stats/context projections, else 'base'."""
  def label(path, _):
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return "new_layers" if names[0] == "context" and any(n in NEW_LAYERS for n in names) else "base"
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(opt):
  """AdamW at a constant learning rate (after an optional linear warm-up); the new projection
  layers at `new_layers_lr_multiplier` × it (GenDeg: 10×); optional global-norm clipping."""
  def adamw(scale):
    lr = opt.learning_rate * scale
    if opt.get("warmup_steps", 0):
      lr = optax.linear_schedule(0.0, lr, opt.warmup_steps)
    return optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.get("eps", 1e-8), weight_decay=opt.weight_decay)
  tx = optax.multi_transform({"base": adamw(1.0), "new_layers": adamw(opt.new_layers_lr_multiplier)},
                             new_layer_labels)
  return optax.chain(optax.clip_by_global_norm(opt.grad_clip), tx) if opt.get("grad_clip") else tx


def init_optimizer(tx, boxed_params):
  """tx.init on logically boxed params. multi_transform leaves each group's state a MaskedNode where
  the other group's params are: unbox those (they hold no arrays), or sharding would look for one."""
  def fix(x):
    return x.value if isinstance(x, nn.Partitioned) and isinstance(x.value, optax.MaskedNode) else x
  return jax.tree.map(fix, tx.init(boxed_params), is_leaf=lambda x: isinstance(x, nn.Partitioned))


def _vae_source(vae_config, init=None):
  """(AutoencoderKL, loader returning its params) from `vae.workdir` or `vae.diffusers_path`, else
  from the single file `init_weights.path` names."""
  workdir, path = vae_config.get("workdir"), vae_config.get("diffusers_path")
  if init and init.get("path") and not (workdir or path):
    return _single_file_vae(init, vae_config)
  if bool(workdir) == bool(path):
    raise ConfigError("config.vae: set exactly one of vae.workdir (a `vae` task run) and vae.diffusers_path "
                      f"(a diffusers AutoencoderKL folder); got workdir={workdir!r}, diffusers_path={path!r}")
  dtype = module_kwargs({"dtype": vae_config.get("dtype", "float32")}, "config.vae")["dtype"]
  if workdir:
    saved = saved_config(workdir, "config.vae.workdir", "vae")
    model = AutoencoderKL(**{**module_kwargs(saved.model, "config.vae.workdir model"), "dtype": dtype, "remat": False})
    use_ema = vae_config.get("use_ema", True)
    return model, lambda: inference_params(load_state(workdir), use_ema)
  from jaxdeg.interop import diffusers
  config = diffusers.load_config(path, "vae")
  if config is None:
    raise ConfigError(f"config.vae.diffusers_path={path}: no config.json there (nor in its vae/ folder)")
  model = AutoencoderKL(**{**diffusers.vae_kwargs(config), "dtype": dtype})
  return model, lambda: diffusers.import_vae(path)[1]["params"]


def _read_init_file(init, prefixes):
  from jaxdeg.interop import compvis
  return compvis.read_state_dict(init.path, allow_unsafe_pickle=init.get("allow_unsafe_pickle", False),
                                 flag="--config.init_weights.allow_unsafe_pickle=True", prefixes=prefixes)


def _single_file_vae(init, vae_config):
  """The frozen VAE of a CompVis single file (SD-1.5's, as GenDeg starts from)."""
  from jaxdeg.interop import compvis
  dtype = module_kwargs({"dtype": vae_config.get("dtype", "float32")}, "config.vae")["dtype"]
  vae_sd = _read_init_file(init, (compvis.VAE_PREFIX,))
  groups = vae_config.get("norm_num_groups", 32)  # not in the weights; SD's 32
  model = AutoencoderKL(**compvis.vae_kwargs({k[len(compvis.VAE_PREFIX):]: v for k, v in vae_sd.items()}, groups),
                        dtype=dtype)
  return model, lambda: compvis.vae_params(_read_init_file(init, (compvis.VAE_PREFIX,)), model, what=init.path)


def _single_file_unet(init, unet):
  """UNet params from `init_weights.path` (conv_in widened with zeros to the model's inputs). Its
  trained weights, as GenDeg's init_from_ckpt (load_ema=False) takes them: in SD-1.5's
  '-emaonly' files those are the EMA weights."""
  from jaxdeg.interop import compvis
  params, _ = compvis.unet_params(_read_init_file(init, (compvis.UNET_PREFIX,)), unet, use_ema=False,
                                  what=init.path)
  logging.info("UNet initialised from %s", init.path)
  return params


def is_key_batch(key):
  """True for one key per example (raw (B, 2) or typed (B,)), False for one key."""
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  return key.ndim == (1 if typed else 2)


class Sampler:
  """GenDeg sampling, jitted once per instance (the sampler's loop is a lax.scan):

      images = sampler(ldm_params, vae_params, clean, type_ids, mu_bins, sigma_bins, key,
                       text_scale=7.5, image_scale=1.5)

  clean (B, H, W, 3) in [0, 1] with H, W multiples of the VAE's factor; type_ids (B,) into the
  context's types; mu_bins, sigma_bins (B,) in [0, 128] (128 = null); returns (B, H, W, 3) in
  [0, 1]; `key` is one key or one per example (then each sample is independent of its batch).
  `ldm_params` = {'unet', 'context'} (a train state's params or EMA params), `vae_params`
  = its model_state['vae']. Dual guidance as GenDeg: the unconditional image is a zero latent,
  null text is the null type token with null μσ.
  """

  def __init__(self, task, steps, method="euler_ancestral", interp="log"):
    self.task, self.steps, self.method, self.interp = task, int(steps), method, interp
    if method not in diffusion.SAMPLERS:
      raise ConfigError(f"sampler {method!r}: choose one of {', '.join(diffusion.SAMPLERS)}")
    self._jitted = jax.jit(self.sample)

  def __call__(self, ldm_params, vae_params, clean, type_ids, mu_bins, sigma_bins, key, text_scale=7.5,
               image_scale=1.5):
    return self._jitted(ldm_params, vae_params, clean, type_ids, mu_bins, sigma_bins, key, text_scale,
                        image_scale)

  def sample(self, ldm_params, vae_params, clean, type_ids, mu_bins, sigma_bins, key, text_scale=7.5,
             image_scale=1.5):
    """The same, traceable (to use inside another jitted function)."""
    clean_lat = self.task.encode_mean(vae_params, clean)
    return self.generate(ldm_params, vae_params, clean_lat, type_ids, mu_bins, sigma_bins, key, text_scale,
                         image_scale)

  def generate(self, ldm_params, vae_params, clean_lat, type_ids, mu_bins, sigma_bins, key, text_scale,
               image_scale):
    """`sample` from the clean image's latent (the VAE's unscaled posterior mean)."""
    task = self.task
    b = clean_lat.shape[0]
    stats = jnp.stack([intensity.one_hot(mu_bins), intensity.one_hot(sigma_bins)], axis=-2)
    null_stats, null_types = null_inputs(b, task.context.types)
    ctx = task.context.apply({"params": ldm_params["context"]}, stats, type_ids=type_ids)
    null_ctx = task.context.apply({"params": ldm_params["context"]}, null_stats, type_ids=null_types)

    def apply_fn(x, t, cond):
      image_lat, context = cond
      return task.unet.apply({"params": ldm_params["unet"]}, jnp.concatenate([x, image_lat], -1), t, context)

    model_fn = guidance.dual(apply_fn, (clean_lat, ctx), (clean_lat, null_ctx), (jnp.zeros_like(clean_lat), null_ctx),
                             text_scale, image_scale)
    if is_key_batch(key):  # one key per example: a sample does not depend on its batch
      k_init, k_steps = jnp.moveaxis(jax.vmap(jax.random.split)(key), 1, 0)
      noise = jax.vmap(lambda k: jax.random.normal(k, clean_lat.shape[1:], jnp.float32))(k_init)
    else:
      k_init, k_steps = jax.random.split(key)
      noise = jax.random.normal(k_init, clean_lat.shape, jnp.float32)
    options = {"prediction": task.prediction}
    if self.method == "euler_ancestral":
      options["interp"] = self.interp
    z = diffusion.sample(self.method, model_fn, noise, k_steps, task.schedule, self.steps, **options)
    return task.decode(vae_params, z / task.scaling_factor)


class LdmTask(Task):

  def __init__(self, config):
    super().__init__(config)
    self.vae, self._load_vae = _vae_source(config.vae, config.get("init_weights"))
    self.scaling_factor = float(config.vae.scaling_factor)
    unet_kwargs = module_kwargs(config.model, "config.model")
    if unet_kwargs.get("in_channels", 8) != 2 * self.vae.latent_channels:
      raise ConfigError(f"config.model.in_channels={unet_kwargs.get('in_channels', 8)}: must be twice the VAE's "
                        f"{self.vae.latent_channels} latent channels (noisy latent ‖ clean latent)")
    self.unet = UNet(**{**unet_kwargs, "out_channels": self.vae.latent_channels})
    ctx = config.context
    self.context = DegradationContext(context_len=ctx.context_len, context_dim=self.unet.cross_attention_dim,
                                      types=tuple(ctx.types), stats_columns_init=ctx.stats_columns_init,
                                      stats_proj_init=ctx.get("stats_proj_init", "default"), dtype=self.unet.dtype)
    d = config.diffusion
    self.schedule = diffusion.make_schedule(d.beta_schedule, d.num_train_timesteps, d.beta_start, d.beta_end)
    self.prediction = d.prediction
    if self.prediction not in ("epsilon", "v_prediction"):
      raise ConfigError(f"config.diffusion.prediction={self.prediction!r}: must be 'epsilon' or 'v_prediction'")
    self.tx = make_optimizer(config.optimizer)
    self.pairs = PairMaker(config, config.pairs.types, config.pairs.intensity, self.context.types)
    f = self.vae.downsample_factor
    if config.data.crop % f or config.data.eval_crop % f:
      raise ConfigError(f"config.data.crop={config.data.crop} and eval_crop={config.data.eval_crop} must be "
                        f"multiples of the VAE's downsampling factor {f}")

  # -- the frozen VAE -----------------------------------------------------------------------------

  def encode_mean(self, vae_params, images):
    """Images in [0, 1] -> the unscaled posterior mean (GenDeg's image condition)."""
    mean, _ = self.vae.apply({"params": vae_params}, to_model_range(images), method=AutoencoderKL.encode)
    return jax.lax.stop_gradient(mean)

  def posterior(self, vae_params, clean, degraded):
    """(clean mean, degraded mean, degraded log-variance): one VAE call for both images."""
    mean, logvar = self.vae.apply({"params": vae_params}, to_model_range(jnp.concatenate([clean, degraded])),
                                  method=AutoencoderKL.encode)
    b = clean.shape[0]
    return mean[:b], mean[b:], logvar[b:]

  def latents(self, vae_params, clean, degraded, key):
    """(clean latent = mean, unscaled; target = posterior sample × scale)."""
    clean_mean, mean, logvar = self.posterior(vae_params, clean, degraded)
    target = sample_posterior(mean, logvar, key) * self.scaling_factor
    return jax.lax.stop_gradient(clean_mean), jax.lax.stop_gradient(target)

  def decode(self, vae_params, z):
    return to_image_range(self.vae.apply({"params": vae_params}, z, method=AutoencoderKL.decode))

  @functools.cached_property
  def vae_shapes(self):
    f = self.vae.downsample_factor
    return jax.eval_shape(lambda: self.vae.init(jax.random.PRNGKey(0), jnp.zeros((1, f, f, 3))))["params"]

  # -- the diffusion model ------------------------------------------------------------------------

  def latent_shape(self, crop):
    f = self.vae.downsample_factor
    return (crop // f, crop // f, self.vae.latent_channels)

  def init_state(self, rng):
    k_init, rng = jax.random.split(rng)
    k_unet, k_ctx = jax.random.split(init_key(k_init))
    h, w, c = self.latent_shape(self.config.data.crop)
    null_stats, null_types = null_inputs(1, self.context.types)
    context = jnp.zeros((1, self.context.context_len, self.context.context_dim), jnp.float32)
    params = {"unet": self.unet.init(k_unet, jnp.zeros((1, h, w, 2 * c)), jnp.zeros((1,)), context)["params"],
              "context": self.context.init(k_ctx, null_stats, type_ids=null_types)["params"]}
    init = self.config.get("init_weights")
    if init and init.get("path"):  # start from SD-1.5 as GenDeg: read when the jitted init runs
      params["unet"] = frozen_in_init(lambda: _single_file_unet(init, self.unet), params["unet"])
    vae = frozen_in_init(self._load_vae_logged, self.vae_shapes)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=init_optimizer(self.tx, params),
                      model_state={"vae": vae}, ema_params=params if self.config.train.ema_decay > 0 else None,
                      rng=rng)

  def _load_vae_logged(self):
    params = self._load_vae()
    logging.info("frozen VAE loaded (%d arrays)", len(jax.tree.leaves(params)))
    return params

  def predict(self, params, x_t, image_lat, t, stats, type_ids):
    context = self.context.apply({"params": params["context"]}, stats, type_ids=type_ids)
    return self.unet.apply({"params": params["unet"]}, jnp.concatenate([x_t, image_lat], axis=-1), t, context)

  def measure(self, clean, degraded):
    """GenDeg's (μ, σ) of |clean − degraded|, at the configured statistics size."""
    return intensity.intensity_stats(clean, degraded, size=self.config.conditioning.stats_size)

  def condition_dropout(self, key, mu, sigma, type_ids, image_lat):
    """GenDeg's table, one draw per example: with p = conditioning.dropout, r < p drops text (the
    type token) and μσ; p..2p drops those and the image (zero latent); 2p..3p the image only.
    Returns (μσ one-hots, type ids, image latents) with the dropped ones nulled."""
    drop_text_stats, drop_image = dropout_masks(key, mu.shape[0], self.config.conditioning.dropout)
    stats = intensity.stats_one_hot(mu, sigma, null=drop_text_stats)
    type_ids = jnp.where(drop_text_stats, len(self.context.types), type_ids)
    image_lat = jnp.where(drop_image[:, None, None, None], 0.0, image_lat)
    return stats, type_ids, image_lat

  def cache_entries(self, vae_params, key, batch):
    """What the latent cache stores of a training batch: the pairs the step would make from `key`,
    their μ/σ, and the VAE's posterior parameters (one VAE call for clean and degraded)."""
    clean, degraded, type_ids = self.pairs.train_pairs(key, batch)
    mu, sigma = self.measure(clean, degraded)
    clean_mean, mean, logvar = self.posterior(vae_params, clean, degraded)
    return {"clean": clean, "clean_latent": clean_mean, "degraded_mean": mean, "degraded_logvar": logvar,
            "mu": mu, "sigma": sigma, "type": type_ids}

  def train_step(self, state, batch):
    k_pair, k_post, k_drop, k_t, k_noise = jax.random.split(state.step_rng(), 5)
    if "clean_latent" in batch:  # from the latent cache: the VAE already ran
      mu, sigma, type_ids = batch["mu"], batch["sigma"], batch["type"]
      image_lat = batch["clean_latent"]
      target = sample_posterior(batch["degraded_mean"], batch["degraded_logvar"], k_post) * self.scaling_factor
    else:
      clean, degraded, type_ids = self.pairs.train_pairs(k_pair, batch)
      mu, sigma = self.measure(clean, degraded)
      image_lat, target = self.latents(state.model_state["vae"], clean, degraded, k_post)
    b = target.shape[0]
    stats, type_ids, image_lat = self.condition_dropout(k_drop, mu, sigma, type_ids, image_lat)
    t = jax.random.randint(k_t, (b,), 0, self.schedule.num_train_timesteps)
    noise = jax.random.normal(k_noise, target.shape, jnp.float32)
    x_t = self.schedule.add_noise(target, noise, t)
    alpha_bar = jnp.asarray(self.schedule.alphas_cumprod, jnp.float32)[t]
    want = parametrization.training_target(self.prediction, target, noise, alpha_bar)

    def loss_fn(params):
      out = self.predict(params, x_t, image_lat, t, stats, type_ids)
      return jnp.mean(jnp.square(out - want))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    state = apply_gradients(state, grads, self.tx, ema_decay=self.config.train.ema_decay)
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads), "mu": jnp.mean(mu)}

  @functools.cached_property
  def sampler(self):
    e = self.config.eval
    return Sampler(self, e.sample_steps, e.sampler, e.sigma_interp)

  def eval_step(self, state, batch):
    """Denoising MSE at fixed timesteps with noise fixed per example (cheap, comparable across
    checkpoints); a short guided sampling and how far its μ lands from the target's. Per type too."""
    seed = self.config.seed + 1
    clean, degraded, type_ids = self.pairs.eval_pairs(seed, batch)
    params = state.ema_params if state.ema_params is not None else state.params
    vae_params = state.model_state["vae"]
    mu, sigma = self.measure(clean, degraded)
    stats = intensity.stats_one_hot(mu, sigma)
    # every example's noise follows from its index: the same on any mesh and in any batch
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(batch["index"])
    both = self.encode_mean(vae_params, jnp.concatenate([clean, degraded]))
    image_lat, target = both[:clean.shape[0]], both[clean.shape[0]:] * self.scaling_factor
    errors = []
    for t in self.config.eval.timesteps:
      noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, t), target.shape[1:]))(keys)
      tt = jnp.full((clean.shape[0],), t, jnp.int32)
      x_t = self.schedule.add_noise(target, noise, tt)
      want = parametrization.training_target(self.prediction, target, noise,
                                             jnp.asarray(self.schedule.alphas_cumprod, jnp.float32)[tt])
      out = self.predict(params, x_t, image_lat, tt, stats, type_ids)
      errors.append(jnp.mean(jnp.square(out - want), axis=(1, 2, 3)))
    e = self.config.eval
    sample_keys = jax.vmap(lambda k: jax.random.fold_in(k, self.schedule.num_train_timesteps))(keys)
    generated = self.sampler.generate(params, vae_params, image_lat, type_ids, intensity.mu_bin(mu),
                                      intensity.sigma_bin(sigma), sample_keys, e.text_scale, e.image_scale)
    mu_generated, _ = self.measure(clean, generated)
    return {"metrics": {"denoise_mse": jnp.mean(jnp.stack(errors), axis=0), "mu_error": jnp.abs(mu_generated - mu)},
            "images": {"clean": clean, "generated": generated, "target": degraded},
            "groups": {"type": type_ids}}

  def group_names(self):
    return {"type": tuple(self.context.types) + ("null",)}

  def train_data(self):
    folder = self.config.data.get("latent_cache", "")
    if not folder:
      return from_config.train_data(self.config)
    from jaxdeg.tasks import _ldm_latent_cache as cache
    source = cache.check_cache(folder, self.latent_shape(self.config.data.crop), self.context.types)
    logging.info("training from the latent cache %s (%d records)", folder, len(source))
    return cache.latent_dataset(source, global_batch_size=self.config.train.batch_size, seed=self.config.seed)

  def write_latent_cache(self, log=logging.info):
    """`--mode=cache_latents`: config.data.latent_cache_batches training batches into
    config.data.latent_cache."""
    from jaxdeg.tasks import _ldm_latent_cache as cache
    d = self.config.data
    if not d.get("latent_cache"):
      raise ConfigError("--mode=cache_latents: set config.data.latent_cache to the folder to write")
    vae = self.config.vae
    where = vae.get("workdir") or vae.get("diffusers_path")
    # the cache is written from images: read them even when the config already names the cache
    images = LdmTask(_without_cache(self.config))
    return cache.write_cache(images, d.latent_cache, int(d.get("latent_cache_batches", 0)), vae_description=where,
                             log=log)

  def eval_data(self):
    return from_config.eval_data(self.config)


def _without_cache(config):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data.latent_cache = ""
  return config


def make_sampler(config, steps=None, method=None):
  """A jitted `Sampler` for an ldm config (`steps` and `method` default to config.eval's)."""
  task = LdmTask(config)
  e = config.eval
  return Sampler(task, steps or e.sample_steps, method or e.sampler, e.sigma_interp)


TASK = LdmTask
