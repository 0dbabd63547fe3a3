"""What GenDeg's tasks (vae, ldm, structure) share: degradation pairs made on the device, and
frozen weights read from another run's checkpoint.

Pairs: a batch of clean images ('image') is degraded in the jitted step with one of the
configured GenDeg types per example, at a random intensity; a batch of real pairs ('clean',
'degraded', 'type' from the data sources) passes through, its data labels mapped to the
conditioning vocabulary. Which of the two a batch is follows from its keys (static under jit).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxdeg import degrade
from jaxdeg.data import from_config, samples
from jaxdeg.errors import ConfigError
from jaxdeg.train import checkpoint as ckpt

# The six single degradations GenDeg trains on; "a+b" names a mixture applied in that order.
GENDEG_TYPES = ("haze", "rain", "snow", "motion_blur", "low_light", "raindrop")


def type_spec(name, intensity):
  """jaxdeg.degrade spec of a type name: 'snow+haze' -> snow then haze, each at its own intensity."""
  return [{"name": part, "intensity": tuple(intensity)} for part in name.split("+")]


class PairMaker:
  """(key, batch) -> (clean, degraded, type ids in `vocabulary`), all on the device.

  `types`: the procedural types drawn (uniformly per example) for clean-image batches.
  `vocabulary`: the conditioning's type names; its length is the null id (unknown labels).
  """

  def __init__(self, config, types, intensity, vocabulary, where="config.pairs"):
    self.types = tuple(types)
    self.vocabulary = tuple(vocabulary)
    if not self.types:
      raise ConfigError(f"{where}.types is empty: name at least one degradation type")
    lo_hi = tuple(intensity)
    if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
      raise ConfigError(f"{where}.intensity={intensity!r}: must be a (low, high) pair within [0, 1]")
    unknown = [t for t in self.types if t not in self.vocabulary]
    if unknown:
      raise ConfigError(f"{where}.types: {unknown} not in the conditioning vocabulary {self.vocabulary}")
    self.specs = []
    for t in self.types:
      try:
        degrade.parse_spec(type_spec(t, lo_hi))
      except ConfigError as e:
        raise ConfigError(f"{where}.types: {t!r}: {e}") from None
      self.specs.append(type_spec(t, lo_hi))
    self.type_ids = jnp.asarray([self.vocabulary.index(t) for t in self.types], jnp.int32)
    # Real pairs carry their source's label index into the data vocabulary: map it to ours.
    data_names = from_config.type_names(config.data) if config.data.get("sources") else ()
    null = len(self.vocabulary)
    self.data_to_model = jnp.asarray([self.vocabulary.index(n) if n in self.vocabulary else null
                                      for n in data_names] + [null], jnp.int32)
    dropped = [n for n in data_names if n not in self.vocabulary]
    if dropped:
      logging.warning("data labels %s are not degradation types of the model %s: those pairs train with "
                      "the null type token", dropped, self.vocabulary)

  def degrade(self, keys, clean, choice):
    """Each example degraded with the type `choice` indexes (all types run; one is kept)."""
    outs = [jax.vmap(lambda k, im, s=spec: degrade.apply_spec(k, im, s)[0])(keys, clean) for spec in self.specs]
    if len(outs) == 1:
      return outs[0]
    stacked = jnp.stack(outs)  # (types, B, H, W, 3)
    return jnp.take_along_axis(stacked, choice[None, :, None, None, None], axis=0)[0]

  def train_pairs(self, key, batch):
    if "degraded" in batch:
      return batch["clean"], batch["degraded"], self._data_types(batch["type"])
    clean = batch["image"]
    k_type, k_deg = jax.random.split(key)
    choice = jax.random.randint(k_type, (clean.shape[0],), 0, len(self.types))
    degraded = self.degrade(jax.random.split(k_deg, clean.shape[0]), clean, choice)
    return clean, degraded, self.type_ids[choice]

  def eval_pairs(self, seed, batch):
    """As train_pairs, but every example's type and degradation follow from its index only: the same
    pairs on every run and mesh, and the types cycle through the configured ones."""
    if "degraded" in batch:
      return batch["clean"], batch["degraded"], self._data_types(batch["type"])
    clean = batch["image"]
    eval_key = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(eval_key, i))(batch["index"])
    choice = batch["index"] % len(self.types)
    return clean, self.degrade(keys, clean, choice), self.type_ids[choice]

  @staticmethod
  def stats(batch, mu, sigma):
    """(μ, σ) of each pair: what the data pipeline measured on the whole pair resized
    (config.data.resize, as GenDeg) where the batch carries it, else `mu`, `sigma` measured on the
    device (on the crop; pairs made on the device have no pipeline value)."""
    if "mu" not in batch or "sigma" not in batch:
      return mu, sigma
    given = jnp.isfinite(batch["mu"]) & jnp.isfinite(batch["sigma"])
    return jnp.where(given, batch["mu"], mu), jnp.where(given, batch["sigma"], sigma)

  def _data_types(self, labels):
    # -1 (no label) indexes the trailing null entry
    return self.data_to_model[jnp.where(labels < 0, len(self.data_to_model) - 1, labels)]


# ------------------------------------------------------------------------------------------------
# frozen weights from another run


def saved_config(workdir, field, task):
  """The config of the `task` run in `workdir` (cheap: no arrays are read); `field` names the
  config field that pointed there, for errors."""
  if not workdir or ckpt.latest_step(workdir) is None:
    raise ConfigError(f"{field}={workdir}: no checkpoint found there (train that `{task}` run first)")
  config, _ = ckpt.restore_config(workdir)
  if config.get("task") != task:
    raise ConfigError(f"{field}={workdir}: that run trained task {config.get('task')!r}, not {task!r}")
  return config


def load_state(workdir):
  """The latest train state of a run, as host numpy arrays."""
  from jaxdeg.tasks import runs
  _, _, state, step = runs.load_run(workdir)
  logging.info("read frozen weights from %s (step %d)", workdir, step)
  return jax.device_get(state)


def frozen_in_init(load_fn, shapes):
  """Inside a task's init_state: the arrays `load_fn()` returns, fetched from the host when the
  jitted init runs (never embedded in the program as constants, never read by eval_shape).

  `shapes` may carry logical axis names (boxed, as from `model.init` under eval_shape): the
  arrays get them too, so frozen weights are sharded by the same rules as trained ones."""
  is_box = lambda x: isinstance(x, nn.Partitioned)
  structs = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), nn.meta.unbox(shapes))
  values = jax.pure_callback(lambda: jax.tree.map(np.asarray, load_fn()), structs)
  return jax.tree.map(lambda s, v: s.replace_boxed(v) if is_box(s) else v, shapes, values, is_leaf=is_box)


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def module_kwargs(section, where):
  """A config section (or saved-config dict) as module keyword arguments: lists become tuples and
  'dtype' names become dtypes."""
  kwargs = {}
  for k, v in (section.to_dict() if hasattr(section, "to_dict") else dict(section)).items():
    if k == "dtype":
      if v not in DTYPES:
        raise ConfigError(f"{where}.dtype={v!r}: must be one of {', '.join(DTYPES)}")
      v = DTYPES[v]
    kwargs[k] = tuple(v) if isinstance(v, list) else v
  return kwargs


def init_key(rng):
  """A key for parameter initialisation with JAX's 'rbg' generator, derived from `rng`.

  XLA:CPU compiles one threefry kernel per initialised tensor, which takes minutes for a UNet;
  'rbg' draws with XLA's RngBitGenerator, compiles several times faster, and gives the same
  values on any mesh."""
  data = jax.random.key_data(rng).reshape(-1)
  return jax.random.wrap_key_data(jnp.concatenate([data, data])[:4], impl="rbg")


# ------------------------------------------------------------------------------------------------
# config defaults shared by configs/gendeg_*.py

TRAIN_PHOTOS, EVAL_PHOTOS = samples.split(held_out=("grace_hopper", "retina"))


def data_config(crop):
  """Bundled sample photos (clean: degraded on the device), `crop`² crops, horizontal flips."""
  d = from_config.defaults()
  d.sources = (dict(kind="samples", photos=TRAIN_PHOTOS),)
  d.eval_sources = (dict(kind="samples", photos=EVAL_PHOTOS),)
  d.crop = crop
  d.eval_crop = crop
  d.flip = "h"
  return d


def pairs_config(types=GENDEG_TYPES, intensity=(0.1, 1.0)):
  """How clean images become pairs: one type per example (uniform over `types`), intensity uniform
  in the range (a choice: GenDeg's real data reaches mu ≈ 0.28 at most)."""
  return ml_collections.ConfigDict(dict(types=tuple(types), intensity=tuple(intensity)))
