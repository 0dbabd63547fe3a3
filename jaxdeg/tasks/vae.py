"""GenDeg's autoencoder: an SD AutoencoderKL trained from scratch on clean AND degraded images.

Both halves of every pair are reconstructed, so the latent space covers degradations as well as
photos (GenDeg's diffusion model generates degraded latents). Loss as Stable Diffusion's first
stage: L1 reconstruction of a posterior sample summed over pixels, plus `loss.kl_weight` times
the KL to N(0, I) summed over latent dimensions, both averaged over the batch; images in [-1, 1].
Pairs come from the data sources (real pairs) or from clean images degraded on the device with
the GenDeg types of `config.pairs`.

With `loss.vgg16_weights` and `loss.lpips_weights` (local files, see jaxdeg.models.perceptual) the
loss adds LPIPS as SD does: `loss.lpips_weight` × LPIPS(reconstruction, input) on every pixel's L1,
i.e. × H·W·3 after the sum over pixels. With `loss.gan_weight` > 0 a patch-GAN discriminator
(`jaxdeg.models.ldm.patch_gan`, its own Adam with betas (0.5, 0.9), its state in the train state's
model_state) joins from step `loss.gan_start` as in SD's first stage: hinge loss for the
discriminator, −D(x̂) for the autoencoder weighted adaptively by ‖∇nll‖ / ‖∇g‖ at the decoder's
output conv, × gan_weight.
Eval: PSNR of the reconstructions (posterior mean) of clean and degraded images, per type too.
"""
import jax
import jax.numpy as jnp
import optax
from absl import logging

from jaxdeg.data import from_config
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr
from jaxdeg.models.ldm import DEGRADATION_TYPES, AutoencoderKL, patch_gan
from jaxdeg.models.ldm.vae import kl_divergence, sample_posterior
from jaxdeg.tasks import _perceptual
from jaxdeg.tasks.gendeg_data import PairMaker, init_key, module_kwargs
from jaxdeg.tasks.ranges import to_image_range, to_model_range
from jaxdeg.tasks.base import Task
from jaxdeg.train import optimizers
from jaxdeg.train.state import TrainState, apply_gradients


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
    self.tx = optimizers.from_config(config.optimizer, config.train)
    self.lpips = lpips_loss(config.loss)
    self.lpips_weight = float(config.loss.get("lpips_weight", 1.0))
    self.pairs = PairMaker(config, config.pairs.types, config.pairs.intensity, DEGRADATION_TYPES)
    loss = config.loss
    self.gan_weight = float(loss.get("gan_weight", 0.0))
    if self.gan_weight < 0:
      raise ConfigError(f"config.loss.gan_weight={self.gan_weight}: must be ≥ 0 (0 turns the patch GAN off)")
    self.discriminator = None
    if self.gan_weight > 0:
      self.discriminator = patch_gan.PatchDiscriminator(int(loss.get("gan_width", 64)), int(loss.get("gan_layers", 3)))
      # taming's: Adam(0.5, 0.9) at the autoencoder's learning rate, constant, unclipped
      self.disc_tx = optimizers.from_config(dict(learning_rate=config.optimizer.learning_rate, b1=0.5, b2=0.9),
                                            config.train)
      logging.info("VAE: patch-GAN discriminator from step %d, weight %g (adaptive)", loss.get("gan_start", 0),
                   self.gan_weight)

  def init_state(self, rng):
    init_rng, disc_rng, rng = jax.random.split(rng, 3)
    crop = self.config.data.crop
    image = jnp.zeros((1, crop, crop, 3), jnp.float32)
    params = self.model.init(init_key(init_rng), image)["params"]
    model_state = None
    if self.discriminator is not None:
      d = self.discriminator.init(disc_rng, image)
      model_state = {"discriminator": {"params": d["params"], "batch_stats": d["batch_stats"],
                                       "opt_state": self.disc_tx.init(d["params"])}}
    return TrainState.create(params=params, tx=self.tx, rng=rng, ema=self.config.train.ema_decay > 0,
                             model_state=model_state)

  def forward(self, params, x, key):
    """(reconstruction of a posterior sample, posterior mean, log-variance); x in [-1, 1]."""
    mean, logvar = self.model.apply({"params": params}, x, method=AutoencoderKL.encode)
    recon = self.model.apply({"params": params}, sample_posterior(mean, logvar, key), method=AutoencoderKL.decode)
    return recon, mean, logvar

  def reconstruction_loss(self, recon, mean, logvar, x):
    """SD's first-stage loss without the GAN: (total, terms)."""
    l1 = jnp.abs(recon - x)
    kl = jnp.mean(kl_divergence(mean, logvar))
    loss = jnp.mean(jnp.sum(l1, axis=(1, 2, 3))) + self.config.loss.kl_weight * kl
    terms = {"l1": jnp.mean(l1), "kl": kl}
    if self.lpips is not None:
      terms["lpips"] = jnp.mean(self.lpips(to_image_range(recon), to_image_range(x)))
      loss += self.lpips_weight * terms["lpips"] * x[0].size  # on every pixel, as SD
    return loss, terms

  def train_step(self, state, batch):
    k_pair, k_post = jax.random.split(state.step_rng())
    clean, degraded, _ = self.pairs.train_pairs(k_pair, batch)
    x = to_model_range(jnp.concatenate([clean, degraded], axis=0))
    if self.discriminator is not None:
      return self._gan_step(state, x, k_post)
    (loss, aux), grads = jax.value_and_grad(
        lambda p: self.reconstruction_loss(*self.forward(p, x, k_post), x), has_aux=True)(state.params)
    state = apply_gradients(state, grads, self.tx, ema_decay=self.config.train.ema_decay)
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads), **aux}

  def _discriminate(self, d, images, batch_stats=None):
    logits, updates = self.discriminator.apply(
        {"params": d["params"], "batch_stats": d["batch_stats"] if batch_stats is None else batch_stats},
        images, mutable=["batch_stats"])
    return logits, updates["batch_stats"]

  def _gan_step(self, state, x, key):
    """One forward pass of the autoencoder, two pullbacks (reconstruction loss, GAN loss) for the
    adaptive weight; then the discriminator's hinge step on x and the detached reconstruction."""
    d = state.model_state["discriminator"]
    (recon, mean, logvar), pullback = jax.vjp(lambda p: self.forward(p, x, key), state.params)
    (nll, terms), nll_cotangents = jax.value_and_grad(
        lambda r, m, lv: self.reconstruction_loss(r, m, lv, x), argnums=(0, 1, 2), has_aux=True)(recon, mean, logvar)
    g_loss, g_cotangent = jax.value_and_grad(lambda r: patch_gan.generator_loss(self._discriminate(d, r)[0]))(recon)
    (nll_grads,) = pullback(nll_cotangents)
    (g_grads,) = pullback((g_cotangent, jnp.zeros_like(mean), jnp.zeros_like(logvar)))
    on = (state.step >= int(self.config.loss.get("gan_start", 0))).astype(jnp.float32)
    last = lambda g: g["decoder"]["conv_out"]["kernel"]
    weight = patch_gan.adaptive_weight(last(nll_grads), last(g_grads), self.gan_weight) * on
    grads = jax.tree.map(lambda a, b: a + weight * b, nll_grads, g_grads)

    def d_loss(params):
      real, stats = self._discriminate({**d, "params": params}, x)
      fake, stats = self._discriminate({**d, "params": params}, jax.lax.stop_gradient(recon), stats)
      return on * patch_gan.hinge_discriminator_loss(real, fake), (stats, jnp.mean(real), jnp.mean(fake))

    (disc_loss, (stats, real, fake)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(d["params"])
    d_updates, d_opt = self.disc_tx.update(d_grads, d["opt_state"], d["params"])
    new_d = {"params": optax.apply_updates(d["params"], d_updates), "batch_stats": stats, "opt_state": d_opt}
    state = apply_gradients(state, grads, self.tx, ema_decay=self.config.train.ema_decay,
                            model_state={**state.model_state, "discriminator": new_d})
    return state, {"loss": nll + weight * g_loss, "grad_norm": optax.global_norm(grads), **terms,
                   "gan_generator": g_loss, "gan_adaptive_weight": weight, "gan_discriminator": disc_loss,
                   "logits_real": real, "logits_fake": fake}

  def reconstruct(self, params, images):
    """Images in [0, 1] -> reconstructions from the posterior mean, in [0, 1]."""
    mean, _ = self.model.apply({"params": params}, to_model_range(images), method=AutoencoderKL.encode)
    return to_image_range(self.model.apply({"params": params}, mean, method=AutoencoderKL.decode), clip=True)

  def eval_step(self, state, batch):
    clean, degraded, type_ids = self.pairs.eval_pairs(self.config.seed + 1, batch)
    params = state.inference_params()
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
