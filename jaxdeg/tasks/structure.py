"""GenDeg's structure correction: a NAFNet that takes clean ‖ generated (6 channels) and adds a
3-channel residual to the generated image, so a synthesised degradation keeps the clean image's
structure (GenDeg applies it to haze and motion blur).

What it trains on, per step: a clean crop and its procedural degradation (the target, one of
`config.pairs.types` at a random intensity, made on the device), or a real pair when the data
sources hold pairs (then the target is the real degraded image). The "generated" input is
  - by default, the target under a random small geometric misalignment (shift, rotation, scale:
    `config.structure.max_*`): a stand-in for the structural drift of a diffusion sample, so the
    network learns to re-align the degradation to the clean image's geometry;
  - with `config.structure.ldm_workdir`, a real sample of that trained `ldm` run, conditioned on the
    target's type and measured μ/σ (`structure.ldm_steps` Euler-ancestral steps per training step:
    slow, but what the network will see in synthesis).
Loss: L1 to the target. Eval: PSNR of generated and corrected images against the target.

`official_corrector` reads GenDeg's released corrector (NAFNet_Combine's checkpoint) instead.
"""
import functools

import jax
import jax.numpy as jnp
import optax
from jax.scipy import ndimage

from jaxdeg.data import from_config
from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.metrics.image_quality import psnr
from jaxdeg.models.ldm import DEGRADATION_TYPES
from jaxdeg.models.restore import NAFNet
from jaxdeg.tasks.gendeg_data import PairMaker, frozen_in_init, init_key, load_state, saved_config
from jaxdeg.tasks.base import Task
from jaxdeg.train import optimizers
from jaxdeg.train.state import TrainState, apply_gradients


def warp(image, dy, dx, angle, scale):
  """`image` (H, W, 3) resampled (bilinear, edges repeated) under a rotation by `angle` radians and
  a zoom by `scale` about the centre, then a shift of (dy, dx) pixels."""
  h, w = image.shape[:2]
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")
  cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
  src_y = cos * yy - sin * xx + (h - 1) / 2 - dy
  src_x = sin * yy + cos * xx + (w - 1) / 2 - dx
  return jnp.stack([ndimage.map_coordinates(image[..., c], [src_y, src_x], order=1, mode="nearest")
                    for c in range(image.shape[-1])], axis=-1)


def misalign(keys, images, max_shift, max_rotation_deg, max_scale):
  """Each image of a batch under its own random warp (uniform within the limits), one key each."""
  def one(key, image):
    u = lambda i, m: jax.random.uniform(jax.random.fold_in(key, i), (), jnp.float32, -m, m)
    return warp(image, u(0, max_shift), u(1, max_shift), jnp.deg2rad(u(2, max_rotation_deg)), 1.0 + u(3, max_scale))
  return jax.vmap(one)(keys, images)


class _FrozenLdm:
  """A trained `ldm` run, read lazily: its task (modules, sampler) and its params' shapes."""

  def __init__(self, workdir, use_ema, steps):
    from jaxdeg.tasks.ldm import LdmTask, Sampler
    self.workdir, self.use_ema = workdir, use_ema
    self.task = LdmTask(saved_config(workdir, "config.structure.ldm_workdir", "ldm"))
    self.sampler = Sampler(self.task, steps, "euler_ancestral", self.task.config.eval.sigma_interp)

  @functools.cached_property
  def shapes(self):
    state = jax.eval_shape(self.task.init_state, jax.random.PRNGKey(0))  # boxed: keeps logical axes
    return {"params": state.params, "vae": state.model_state["vae"]}

  def load(self):
    state = load_state(self.workdir)
    return {"params": state.inference_params(self.use_ema), "vae": state.model_state["vae"]}


def official_corrector(path, *, allow_unsafe_pickle=False, flag="allow_unsafe_pickle=True", dtype=jnp.float32):
  """(correct, params) for GenDeg's structure-correction checkpoint ({'state_dict': ...}, basicsr
  names; run_single.py's NAFNet_Combine, width 64, [2, 2, 4, 8], 12, [2, 2, 2, 2], sizes read off the
  file): `correct(params, clean, generated)` on images in [0, 1] returns the corrected image in
  [0, 1], unclipped. The network runs as the official code calls it: in [-1, 1], zero-padded."""
  from jaxdeg.interop import compvis
  state_dict = compvis.read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle, flag=flag)
  kwargs = compvis.nafnet_kwargs(state_dict)
  if (kwargs["in_channels"], kwargs["out_channels"]) != (6, 3):
    raise ConfigError(f"{path}: a NAFNet with {kwargs['in_channels']} → {kwargs['out_channels']} channels, not "
                      "GenDeg's structure corrector (clean ‖ generated → 3)")
  model = NAFNet(**kwargs, pad_mode="constant", dtype=dtype)
  params = compvis.nafnet_params(state_dict, model, what=f"{path}: structure corrector")

  def correct(params, clean, generated):
    x = jnp.concatenate([clean, generated], axis=-1) * 2.0 - 1.0
    return (model.apply({"params": params}, x).astype(jnp.float32) + 1.0) * 0.5
  return correct, params


class StructureTask(Task):

  def __init__(self, config):
    super().__init__(config)
    kwargs = dict(config.model)
    if (kwargs.get("in_channels"), kwargs.get("out_channels")) != (6, 3):
      raise ConfigError("config.model: the structure corrector takes clean ‖ generated, so in_channels=6 and "
                        f"out_channels=3; got {kwargs.get('in_channels')} and {kwargs.get('out_channels')}")
    self.model = NAFNet(**kwargs)
    self.tx = optimizers.from_config(config.optimizer, config.train)
    s = config.structure
    self.ldm = _FrozenLdm(s.ldm_workdir, s.use_ema, s.ldm_steps) if s.get("ldm_workdir") else None
    vocabulary = self.ldm.task.context.types if self.ldm else DEGRADATION_TYPES
    self.pairs = PairMaker(config, config.pairs.types, config.pairs.intensity, vocabulary)

  def init_state(self, rng):
    init_rng, rng = jax.random.split(rng)
    crop = self.config.data.crop
    params = self.model.init(init_key(init_rng), jnp.zeros((1, crop, crop, 6), jnp.float32))["params"]
    frozen = {"ldm": frozen_in_init(self.ldm.load, self.ldm.shapes)} if self.ldm else {}
    return TrainState.create(params=params, tx=self.tx, rng=rng, model_state=frozen,
                             ema=self.config.train.ema_decay > 0)

  def generated(self, state, keys, clean, target, type_ids):
    """What the corrector is given as the diffusion model's output (see the module docstring);
    one key per example."""
    s = self.config.structure
    if self.ldm is None:
      return misalign(keys, target, s.max_shift, s.max_rotation, s.max_scale)
    frozen = state.model_state["ldm"]
    mu, sigma = self.ldm.task.measure(clean, target)
    out = self.ldm.sampler.sample(frozen["params"], frozen["vae"], clean, type_ids, intensity.mu_bin(mu),
                                  intensity.sigma_bin(sigma), keys, s.text_scale, s.image_scale)
    return jax.lax.stop_gradient(out)

  def correct(self, params, clean, generated):
    return self.model.apply({"params": params}, jnp.concatenate([clean, generated], axis=-1))

  def train_step(self, state, batch):
    k_pair, k_gen = jax.random.split(state.step_rng())
    clean, target, type_ids = self.pairs.train_pairs(k_pair, batch)
    generated = self.generated(state, jax.random.split(k_gen, clean.shape[0]), clean, target, type_ids)

    def loss_fn(params):
      return jnp.mean(jnp.abs(self.correct(params, clean, generated) - target))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    state = apply_gradients(state, grads, self.tx, ema_decay=self.config.train.ema_decay)
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads),
                   "l1_generated": jnp.mean(jnp.abs(generated - target))}

  def eval_step(self, state, batch):
    seed = self.config.seed + 1
    clean, target, type_ids = self.pairs.eval_pairs(seed, batch)
    # one key per example, from its index: the same inputs on any mesh and in any batch
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed + 1), i))(batch["index"])
    generated = self.generated(state, keys, clean, target, type_ids)
    params = state.inference_params()
    corrected = jnp.clip(self.correct(params, clean, generated), 0.0, 1.0)
    return {"metrics": {"psnr_generated": psnr(generated, target), "psnr_corrected": psnr(corrected, target)},
            "images": {"clean": clean, "generated": generated, "corrected": corrected, "target": target},
            "groups": {"type": type_ids}}

  def group_names(self):
    return {"type": tuple(self.pairs.vocabulary) + ("null",)}

  def train_data(self):
    return from_config.train_data(self.config)

  def eval_data(self):
    return from_config.eval_data(self.config)


TASK = StructureTask
