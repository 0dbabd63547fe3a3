"""GenDeg's autoencoder: an SD AutoencoderKL trained from scratch on clean AND degraded images.

Both halves of every pair are reconstructed, so the latent space covers degradations as well as
photos (GenDeg's diffusion model generates degraded latents). Loss as Stable Diffusion's first
stage: L1 reconstruction of a posterior sample summed over pixels, plus `loss.kl_weight` times
the KL to N(0, I) summed over latent dimensions, both averaged over the batch; images in [-1, 1].
Pairs come from the data sources (real pairs) or from clean images degraded on the device with
the GenDeg types of `config.pairs`.

With `loss.vgg16_weights` and `loss.lpips_weights` (local files, see jaxdeg.models.perceptual) the
loss adds LPIPS as SD does: `loss.lpips_weight` × LPIPS(reconstruction, input) on every pixel's L1,
i.e. × H·W·3 after the sum over pixels. Not implemented: the patch-GAN discriminator.
Eval: PSNR of the reconstructions (posterior mean) of clean and degraded images, per type too.
"""
import jax
import jax.numpy as jnp
import optax
from absl import logging

from jaxdeg.data import from_config
from jaxdeg.metrics.image_quality import psnr
from jaxdeg.models.ldm import DEGRADATION_TYPES, AutoencoderKL
from jaxdeg.models.ldm.vae import kl_divergence, sample_posterior
from jaxdeg.tasks import _perceptual
from jaxdeg.tasks._gendeg_data import PairMaker, init_key, module_kwargs, to_image_range, to_model_range
from jaxdeg.tasks.base import Task
from jaxdeg.train.state import TrainState, apply_gradients


def make_optimizer(opt):
  """Adam(W) with a constant learning rate (after an optional linear warm-up) and clipping."""
  lr = opt.learning_rate
  if opt.get("warmup_steps", 0):
    lr = optax.linear_schedule(0.0, opt.learning_rate, opt.warmup_steps)
  tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
  return optax.chain(optax.clip_by_global_norm(opt.grad_clip), tx) if opt.get("grad_clip") else tx


def lpips_loss(loss_config):
  """The LPIPS distance when the config turns the term on (files read here), else None."""
  if loss_config.get("lpips_weights") and loss_config.get("lpips_weight", 1.0) > 0:
    distance = _perceptual.load(loss_config, "config.loss", ("lpips",))["lpips"]
    logging.info("VAE loss: L1 + KL + %s", _perceptual.describe({"lpips": distance}, loss_config))
    return distance
  logging.info("VAE loss: L1 + KL only (no LPIPS term: config.loss.lpips_weights is %s, lpips_weight %s)",
               loss_config.get("lpips_weights"), loss_config.get("lpips_weight", 1.0))
  return None


class VaeTask(Task):

  def __init__(self, config):
    super().__init__(config)
    self.model = AutoencoderKL(**module_kwargs(config.model, "config.model"))
    self.tx = make_optimizer(config.optimizer)
    self.lpips = lpips_loss(config.loss)
    self.lpips_weight = float(config.loss.get("lpips_weight", 1.0))
    self.pairs = PairMaker(config, config.pairs.types, config.pairs.intensity, DEGRADATION_TYPES)

  def init_state(self, rng):
    init_rng, rng = jax.random.split(rng)
    crop = self.config.data.crop
    params = self.model.init(init_key(init_rng), jnp.zeros((1, crop, crop, 3), jnp.float32))["params"]
    return TrainState.create(params=params, tx=self.tx, rng=rng, ema=self.config.train.ema_decay > 0)

  def train_step(self, state, batch):
    k_pair, k_post = jax.random.split(state.step_rng())
    clean, degraded, _ = self.pairs.train_pairs(k_pair, batch)
    x = to_model_range(jnp.concatenate([clean, degraded], axis=0))
    kl_weight = self.config.loss.kl_weight

    def loss_fn(params):
      variables = {"params": params}
      mean, logvar = self.model.apply(variables, x, method=AutoencoderKL.encode)
      recon = self.model.apply(variables, sample_posterior(mean, logvar, k_post), method=AutoencoderKL.decode)
      l1 = jnp.abs(recon - x)
      kl = jnp.mean(kl_divergence(mean, logvar))
      loss = jnp.mean(jnp.sum(l1, axis=(1, 2, 3))) + kl_weight * kl
      terms = {"l1": jnp.mean(l1), "kl": kl}
      if self.lpips is not None:
        terms["lpips"] = jnp.mean(self.lpips(to_image_range(recon), to_image_range(x)))
        loss += self.lpips_weight * terms["lpips"] * x[0].size  # on every pixel, as SD
      return loss, terms

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = apply_gradients(state, grads, self.tx, ema_decay=self.config.train.ema_decay)
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads), **aux}

  def reconstruct(self, params, images):
    """Images in [0, 1] -> reconstructions from the posterior mean, in [0, 1]."""
    mean, _ = self.model.apply({"params": params}, to_model_range(images), method=AutoencoderKL.encode)
    return to_image_range(self.model.apply({"params": params}, mean, method=AutoencoderKL.decode))

  def eval_step(self, state, batch):
    clean, degraded, type_ids = self.pairs.eval_pairs(self.config.seed + 1, batch)
    params = state.ema_params if state.ema_params is not None else state.params
    recon = self.reconstruct(params, jnp.concatenate([clean, degraded], axis=0))
    clean_recon, degraded_recon = jnp.split(recon, 2, axis=0)
    return {"metrics": {"psnr_clean": psnr(clean_recon, clean), "psnr_degraded": psnr(degraded_recon, degraded)},
            "images": {"clean": clean, "clean_recon": clean_recon, "degraded": degraded,
                       "degraded_recon": degraded_recon},
            "groups": {"type": type_ids}}

  def group_names(self):
    return {"type": DEGRADATION_TYPES + ("null",)}

  def train_data(self):
    return from_config.train_data(self.config)

  def eval_data(self):
    return from_config.eval_data(self.config)


TASK = VaeTask
