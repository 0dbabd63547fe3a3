"""GenDeg's conditional latent diffusion model: puts a chosen degradation, at a chosen intensity
(μ, σ), on a clean image.

Per step: pairs (real, or clean images degraded on the device with a random GenDeg type and
intensity); μ/σ of |clean − degraded|: as GenDeg, on the whole pair resized to 256² by the data
pipeline (`data.resize`), else measured on the device on the crop (`jaxdeg.degrade.intensity`); the
frozen VAE encodes the clean image to its posterior mean (unscaled: the image condition) and the
degraded image to a posterior sample × `vae.scaling_factor` (the diffusion target); GenDeg's
condition dropout; ε-prediction MSE (or v) on the noisy target ‖ clean latent, with the
degradation context (the type's text, plus the μ/σ projections) as cross-attention context.
AdamW at a constant learning rate, 10× on the two new projection layers; EMA of the trained params
(GenDeg: of the UNet only, `train.ema_exclude`, with LitEma's warm-up, `train.ema_warmup`).

The frozen VAE comes from a `vae` task run (`vae.workdir`) or a diffusers folder
(`vae.diffusers_path`). Its weights are read once, when a fresh state is initialised, and then
live in the train state's `model_state['vae']`: every checkpoint carries them (sampling needs no
other weights; the VAE's architecture is still read from that run's config or config.json).

The type's text: learned type tokens (`context.text_encoder=''`, the from-scratch option), or
GenDeg's: the frozen CLIP text encoder (`context.text_encoder='clip'`, weights from
`context.text_encoder_weights`: a diffusers folder with text_encoder/ and tokenizer/, or an SD-1.x
single file) on GenDeg's prompt for each type (`gendeg_prompt`), the null text CLIP(""). The
prompts are encoded once, inside the jitted init, and kept as `model_state['text']` (types + 1,
L, D): every checkpoint carries them, so training and sampling never run CLIP again (the weights
are read only for a fresh state).
`Sampler` takes that table (or one built from per-image captions with `jaxdeg.text.encode`)
as `text=`.

With `data.latent_cache` set, training reads pairs the VAE encoded beforehand
(`--mode=cache_latents`, see `_ldm_latent_cache`) and the step skips the encoder.

Not implemented: per-image captions during training (the data pipelines carry no captions).
"""
import functools
import os

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
from jaxdeg.models.ldm.conditioning import STATS_PROJ_INITS, dropout_masks, gendeg_prompt, null_inputs
from jaxdeg.models.ldm.vae import sample_posterior
from jaxdeg.tasks.base import Task
from jaxdeg.tasks.gendeg_data import PairMaker, frozen_in_init, init_key, load_state, module_kwargs, saved_config
from jaxdeg.tasks.ranges import to_image_range, to_model_range
from jaxdeg.train import optimizers
from jaxdeg.train.state import TrainState, apply_gradients, ema_options

# The two layers GenDeg adds to SD's UNet: Linear(129 → L) for μ and σ, and Linear(D + 2 → D).
NEW_LAYERS = ("stats_proj", "cc_projection")


def new_layer_labels(params):
  """'new_layers' for parameters of the context's stats/context projections, else 'base'."""
  def label(path, _):
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return "new_layers" if names[0] == "context" and any(n in NEW_LAYERS for n in names) else "base"
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(opt, train):
  """AdamW (config.optimizer, jaxdeg.train.optimizers); the new projection layers at
  `new_layers_lr_multiplier` × the learning rate (GenDeg: 10×)."""
  groups = {"base": {}, "new_layers": {"learning_rate": opt.learning_rate * opt.new_layers_lr_multiplier}}
  return optimizers.from_config(opt, train, groups=groups, labels=new_layer_labels)


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
    return model, lambda: load_state(workdir).inference_params(use_ema)
  from jaxdeg.interop import diffusers
  config = diffusers.load_config(path, "vae")
  if config is None:
    raise ConfigError(f"config.vae.diffusers_path={path}: no config.json there (nor in its vae/ folder)")
  model = AutoencoderKL(**{**diffusers.vae_kwargs(config), "dtype": dtype})
  return model, lambda: diffusers.import_vae(path)[1]["params"]


TEXT_ENCODERS = ("", "clip")


class TextSource:
  """The frozen CLIP text encoder of `config.context` and GenDeg's prompts for the context's types
  (rows in type order, then the null text ""). Its config.json and vocabulary are read when a state
  is traced (`setup`), its weights only when a fresh state is initialised: a checkpoint carries
  the prompts' embeddings."""

  def __init__(self, ctx, types, width, allow_unsafe_pickle=False):
    self.weights, self.vocabulary = ctx.get("text_encoder_weights"), ctx.get("vocabulary") or None
    self.allow_unsafe_pickle = bool(allow_unsafe_pickle)
    self.context_len, self.width = int(ctx.context_len), int(width)
    if not self.weights:
      raise ConfigError("config.context.text_encoder='clip' needs config.context.text_encoder_weights: a diffusers "
                        "folder (text_encoder/, tokenizer/) or an SD-1.x checkpoint file")
    try:
      self.prompts = [gendeg_prompt(t) for t in types] + [""]
    except ValueError as e:
      raise ConfigError(f"config.context.types: {e}") from None

  @functools.cached_property
  def setup(self):
    """(CLIPTextTransformer, CLIPTokenizer) after checking the files and sizes."""
    from jaxdeg.interop import clip_text, diffusers
    from jaxdeg.models.text import CLIPTextTransformer
    from jaxdeg.text import encode
    from jaxdeg.text.tokenizer import VocabularyNotFoundError
    where = f"config.context.text_encoder_weights={self.weights}"
    if not os.path.exists(self.weights):
      raise ConfigError(f"{where}: no such file or folder")
    try:
      tokenizer = encode.load_tokenizer(self.weights, self.vocabulary, max_length=self.context_len)
    except VocabularyNotFoundError as e:
      raise ConfigError(f"config.context.vocabulary: {e}") from None
    kwargs = {}  # a single file: SD-1.x's ViT-L/14 (the import checks the shapes)
    if os.path.isdir(self.weights):
      config = diffusers.load_config(self.weights, "text_encoder")
      if config is None:
        raise ConfigError(f"{where}: no config.json there (nor in its text_encoder/ folder)")
      kwargs = clip_text.text_encoder_kwargs(config)
    model = CLIPTextTransformer(**kwargs)
    if model.width != self.width:
      raise ConfigError(f"{where}: CLIP width {model.width} differs from the UNet's cross_attention_dim {self.width}")
    if self.context_len > model.max_positions:
      raise ConfigError(f"config.context.context_len={self.context_len}: the text encoder has {model.max_positions} "
                        "positions")
    return model, tokenizer

  def load_params(self):
    from jaxdeg.text import encode
    params = encode.load_text_encoder(self.weights, self.allow_unsafe_pickle,
                                      "--config.init_weights.allow_unsafe_pickle=True")[1]
    logging.info("frozen CLIP text encoder read from %s", self.weights)
    return params

  def table(self):
    """Inside a jitted init: (types + 1, L, D) embeddings of the prompts; the weights are read on
    the host when it runs (`frozen_in_init`) and are not kept."""
    from jaxdeg.interop import clip_text
    model, tokenizer = self.setup
    params = frozen_in_init(self.load_params, clip_text.param_shapes(model)["params"])
    return model.apply({"params": params}, tokenizer(self.prompts)).astype(jnp.float32)

  def prompt_encoder(self, batch_size=8):
    """A `jaxdeg.text.encode.PromptEncoder` on these weights (per-image prompts, on the host)."""
    from jaxdeg.text import encode
    model, tokenizer = self.setup
    return encode.PromptEncoder(model, self.load_params(), tokenizer, batch_size)


def _text_source(config, types, width):
  """None (learned type tokens) or the TextSource of config.context; a pickled single file is read
  with the run's one opt-in, config.init_weights.allow_unsafe_pickle."""
  kind = config.context.get("text_encoder", "") or ""
  if kind not in TEXT_ENCODERS:
    raise ConfigError(f"config.context.text_encoder={kind!r}: '' (learned type tokens) or 'clip'")
  if kind != "clip":
    return None
  unpickle = (config.get("init_weights") or {}).get("allow_unsafe_pickle", False)
  return TextSource(config.context, types, width, unpickle)


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
                       text_scale=7.5, image_scale=1.5, text=None)

  clean (B, H, W, 3) in [0, 1] with H, W multiples of the VAE's factor; type_ids (B,) into the
  context's types; mu_bins, sigma_bins (B,) in [0, 128] (128 = null); returns (B, H, W, 3) in
  [0, 1]; `key` is one key or one per example (then each sample is independent of its batch).
  `ldm_params` = {'unet', 'context'} (a train state's params or EMA params), `vae_params`
  = its model_state['vae']. Dual guidance as GenDeg: the unconditional image is a zero latent,
  null text is the null type token with null μσ.

  An LDM conditioned on CLIP text needs `text`: (N, L, D) embeddings whose rows type_ids index and
  whose last row is the null text CLIP("") — the train state's model_state['text'] (GenDeg's
  prompt per type), or per-image prompts from `jaxdeg.text.encode.PromptEncoder` followed by its
  `null` (then type_ids = 0 … B − 1).
  """

  def __init__(self, task, steps, method="euler_ancestral", interp="log"):
    self.task, self.steps, self.method, self.interp = task, int(steps), method, interp
    if method not in diffusion.SAMPLERS:
      raise ConfigError(f"sampler {method!r}: choose one of {', '.join(diffusion.SAMPLERS)}")
    self._jitted = jax.jit(self.sample)

  def __call__(self, ldm_params, vae_params, clean, type_ids, mu_bins, sigma_bins, key, text_scale=7.5,
               image_scale=1.5, text=None):
    return self._jitted(ldm_params, vae_params, clean, type_ids, mu_bins, sigma_bins, key, text_scale,
                        image_scale, text)

  def sample(self, ldm_params, vae_params, clean, type_ids, mu_bins, sigma_bins, key, text_scale=7.5,
             image_scale=1.5, text=None):
    """The same, traceable (to use inside another jitted function)."""
    clean_lat = self.task.encode_mean(vae_params, clean)
    return self.generate(ldm_params, vae_params, clean_lat, type_ids, mu_bins, sigma_bins, key, text_scale,
                         image_scale, text)

  def generate(self, ldm_params, vae_params, clean_lat, type_ids, mu_bins, sigma_bins, key, text_scale,
               image_scale, text=None):
    """`sample` from the clean image's latent (the VAE's unscaled posterior mean)."""
    task = self.task
    b = clean_lat.shape[0]
    stats = jnp.stack([intensity.one_hot(mu_bins), intensity.one_hot(sigma_bins)], axis=-2)
    null_stats, null_types = null_inputs(b, task.context.types)
    if task.text is None:
      ctx = task.context.apply({"params": ldm_params["context"]}, stats, type_ids=type_ids)
      null_ctx = task.context.apply({"params": ldm_params["context"]}, null_stats, type_ids=null_types)
    else:
      if text is None:
        raise ConfigError("this LDM is conditioned on CLIP text: pass the sampler text= (its train state's "
                          "model_state['text'], or per-image prompt embeddings followed by the null text)")
      ctx = task.context.apply({"params": ldm_params["context"]}, stats, text=jnp.take(text, type_ids, axis=0))
      null_ctx = task.context.apply({"params": ldm_params["context"]}, null_stats,
                                    text=jnp.broadcast_to(text[-1], (b,) + text.shape[1:]))

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
    proj_init = ctx.get("stats_proj_init", "default")
    if proj_init not in STATS_PROJ_INITS:
      raise ConfigError(f"config.context.stats_proj_init={proj_init!r}: must be one of {', '.join(STATS_PROJ_INITS)}")
    excluded = set(ema_options(config.train)["ema_exclude"]) - {"unet", "context"}
    if excluded:
      raise ConfigError(f"config.train.ema_exclude: {sorted(excluded)} are not param groups; the ldm task has "
                        "'unet' and 'context' (GenDeg: ('context',), the EMA of the UNet only)")
    self.context = DegradationContext(context_len=ctx.context_len, context_dim=self.unet.cross_attention_dim,
                                      types=tuple(ctx.types), stats_columns_init=ctx.stats_columns_init,
                                      stats_proj_init=proj_init, dtype=self.unet.dtype)
    self.text = _text_source(config, self.context.types, self.unet.cross_attention_dim)
    d = config.diffusion
    self.schedule = diffusion.make_schedule(d.beta_schedule, d.num_train_timesteps, d.beta_start, d.beta_end)
    self.prediction = d.prediction
    if self.prediction not in ("epsilon", "v_prediction"):
      raise ConfigError(f"config.diffusion.prediction={self.prediction!r}: must be 'epsilon' or 'v_prediction'")
    self.tx = make_optimizer(config.optimizer, config.train)
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
    return to_image_range(self.vae.apply({"params": vae_params}, z, method=AutoencoderKL.decode), clip=True)

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
    # with CLIP text the context has no type tokens: only GenDeg's two projections
    type_or_text = {"type_ids": null_types} if self.text is None else {"text": context}
    params = {"unet": self.unet.init(k_unet, jnp.zeros((1, h, w, 2 * c)), jnp.zeros((1,)), context)["params"],
              "context": self.context.init(k_ctx, null_stats, **type_or_text)["params"]}
    init = self.config.get("init_weights")
    if init and init.get("path"):  # start from SD-1.5 as GenDeg: read when the jitted init runs
      params["unet"] = frozen_in_init(lambda: _single_file_unet(init, self.unet), params["unet"])
    model_state = {"vae": frozen_in_init(self._load_vae_logged, self.vae_shapes)}
    if self.text is not None:
      model_state["text"] = self.text.table()
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=init_optimizer(self.tx, params),
                      model_state=model_state, ema_params=params if self.config.train.ema_decay > 0 else None,
                      rng=rng)

  def _load_vae_logged(self):
    params = self._load_vae()
    logging.info("frozen VAE loaded (%d arrays)", len(jax.tree.leaves(params)))
    return params

  def type_text(self, model_state, type_ids):
    """The CLIP embeddings of the types' prompts (the null id: CLIP("")); None with type tokens."""
    return None if self.text is None else jnp.take(model_state["text"], type_ids, axis=0)

  def predict(self, params, x_t, image_lat, t, stats, type_ids, text=None):
    """ε (or v) for the types' tokens, or for `text` embeddings (B, L, D) when given."""
    type_or_text = {"type_ids": type_ids} if text is None else {"text": text}
    context = self.context.apply({"params": params["context"]}, stats, **type_or_text)
    return self.unet.apply({"params": params["unet"]}, jnp.concatenate([x_t, image_lat], axis=-1), t, context)

  def measure(self, clean, degraded):
    """GenDeg's (μ, σ) of |clean − degraded|, at the configured statistics size."""
    return intensity.intensity_stats(clean, degraded, size=self.config.conditioning.stats_size)

  def pair_stats(self, batch, clean, degraded):
    """The pairs' (μ, σ): the data pipeline's where the batch has them, else `measure`."""
    return self.pairs.stats(batch, *self.measure(clean, degraded))

  def condition_dropout(self, key, mu, sigma, type_ids, image_lat):
    """GenDeg's table, one draw per example: with p = conditioning.dropout, r < p drops text (to the
    null type token, or CLIP("")) and μσ; p..2p drops those and the image (zero latent); 2p..3p the
    image only.
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
    mu, sigma = self.pair_stats(batch, clean, degraded)
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
      mu, sigma = self.pair_stats(batch, clean, degraded)
      image_lat, target = self.latents(state.model_state["vae"], clean, degraded, k_post)
    b = target.shape[0]
    stats, type_ids, image_lat = self.condition_dropout(k_drop, mu, sigma, type_ids, image_lat)
    t = jax.random.randint(k_t, (b,), 0, self.schedule.num_train_timesteps)
    noise = jax.random.normal(k_noise, target.shape, jnp.float32)
    x_t = self.schedule.add_noise(target, noise, t)
    alpha_bar = jnp.asarray(self.schedule.alphas_cumprod, jnp.float32)[t]
    want = parametrization.training_target(self.prediction, target, noise, alpha_bar)

    text = self.type_text(state.model_state, type_ids)

    def loss_fn(params):
      out = self.predict(params, x_t, image_lat, t, stats, type_ids, text)
      return jnp.mean(jnp.square(out - want))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    state = apply_gradients(state, grads, self.tx, **ema_options(self.config.train))
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
    params = state.inference_params()
    vae_params = state.model_state["vae"]
    mu, sigma = self.pair_stats(batch, clean, degraded)
    stats = intensity.stats_one_hot(mu, sigma)
    # every example's noise follows from its index: the same on any mesh and in any batch
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(batch["index"])
    both = self.encode_mean(vae_params, jnp.concatenate([clean, degraded]))
    image_lat, target = both[:clean.shape[0]], both[clean.shape[0]:] * self.scaling_factor
    text = self.type_text(state.model_state, type_ids)
    errors = []
    for t in self.config.eval.timesteps:
      noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, t), target.shape[1:]))(keys)
      tt = jnp.full((clean.shape[0],), t, jnp.int32)
      x_t = self.schedule.add_noise(target, noise, tt)
      want = parametrization.training_target(self.prediction, target, noise,
                                             jnp.asarray(self.schedule.alphas_cumprod, jnp.float32)[tt])
      out = self.predict(params, x_t, image_lat, tt, stats, type_ids, text)
      errors.append(jnp.mean(jnp.square(out - want), axis=(1, 2, 3)))
    e = self.config.eval
    sample_keys = jax.vmap(lambda k: jax.random.fold_in(k, self.schedule.num_train_timesteps))(keys)
    generated = self.sampler.generate(params, vae_params, image_lat, type_ids, intensity.mu_bin(mu),
                                      intensity.sigma_bin(sigma), sample_keys, e.text_scale, e.image_scale,
                                      state.model_state.get("text"))
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
