"""Trained GenDeg runs as synthesis callables: the LDM generator and the structure corrector."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.models.ldm.conditioning import gendeg_prompt
from jaxdeg.tasks import runs


def ldm_generator(s):
  """(generate, type_ids, name) from the `ldm` run in s.ldm_workdir: GenDeg sampling with dual
  guidance, `s.steps` steps of `s.sampler`, one key per example. A CLIP-conditioned LDM gets
  GenDeg's prompt per type, or with `s.captions` '<the image's caption>, in hazy conditions'
  (each distinct prompt encoded once)."""
  from jaxdeg.tasks.ldm import Sampler
  config, task, state, step = runs.load_run(s.ldm_workdir)
  if config.task != "ldm":
    raise ConfigError(f"config.synth.ldm_workdir={s.ldm_workdir}: a `{config.task}` run, not an `ldm` run")
  types = tuple(task.context.types)
  missing = [t for t in s.types if t not in types]
  if missing:
    raise ConfigError(f"config.synth.types {missing}: the LDM in {s.ldm_workdir} knows {', '.join(types)}")
  sampler = Sampler(task, s.steps, s.sampler, config.eval.get("sigma_interp", "log"))
  # requests and checks use the statistics the LDM was conditioned on
  s.stats_size = int(config.conditioning.stats_size)
  params, vae = state.inference_params(), state.model_state["vae"]
  # CLIP-conditioned LDMs: GenDeg's prompt per type, encoded when the run was initialised
  text = state.model_state.get("text")

  def one(clean, type_id, mu, sigma, key, text):
    out = sampler.sample(params, vae, clean[None], type_id[None], intensity.mu_bin(mu)[None],
                         intensity.sigma_bin(sigma)[None], key, s.text_scale, s.image_scale, text)
    return out[0]

  # vmapped over examples: each sample depends on its own key only, whatever its batch
  jitted = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None)))
  captions = load_captions(s.captions) if s.get("captions") else None
  if captions is not None and task.text is None:
    raise ConfigError(f"config.synth.captions: the LDM in {s.ldm_workdir} uses learned type tokens, not CLIP text")
  encoder = task.text.prompt_encoder(s.batch_size) if captions is not None else None
  per_example = jax.jit(jax.vmap(one))

  def generate(clean, type_ids, mu, sigma, keys, names=None):
    if encoder is None or names is None:
      return jitted(clean, type_ids, mu, sigma, keys, text)
    # each example its own prompt: '<its caption>, in hazy conditions'; rows (prompt, null text)
    prompts = [gendeg_prompt(types[int(t)], caption_of(captions, n)) for t, n in zip(np.asarray(type_ids), names)]
    rows = np.stack([encoder(prompts), np.broadcast_to(encoder.null, (len(prompts),) + encoder.null.shape)], axis=1)
    return per_example(clean, jnp.zeros_like(type_ids), mu, sigma, keys, rows)
  return generate, {t: types.index(t) for t in types}, f"gendeg-ldm {s.ldm_workdir} step {step}"


def released_generator(s):
  """(generate, type_ids, name) from GenDeg's released checkpoint `s.weights` (a Lightning `.ckpt`
  is read only with `s.allow_unsafe_pickle`): the model and sampling `jaxdeg gendeg` runs, GenDeg's
  prompt per type through the checkpoint's own CLIP (with `s.captions` '<caption>, in hazy
  conditions' per image), each sample's noise from its own key."""
  from jaxdeg import gendeg_cli
  from jaxdeg.interop import compvis
  weights = compvis.load(s.weights, allow_unsafe_pickle=s.allow_unsafe_pickle,
                         flag="--config.synth.allow_unsafe_pickle=True")
  model = gendeg_cli.GenDeg(weights, steps=s.steps, text_scale=s.text_scale, image_scale=s.image_scale)
  encoder = gendeg_cli.prompt_encoder(weights, s.vocabulary or None)
  # the types, then the mixtures some sources are prompted as (GenDeg's ORD, CSD)
  types = tuple(dict.fromkeys(tuple(s.types) + tuple(dict(s.mixed_sources or {}).values())))
  type_text = encoder([gendeg_prompt(t) for t in types])
  captions = load_captions(s.captions) if s.get("captions") else None

  def generate(clean, type_ids, mu, sigma, keys, names=None):
    ids = np.asarray(type_ids)
    if captions is None or names is None:
      text = type_text[ids]
    else:
      text = encoder([gendeg_prompt(types[int(t)], caption_of(captions, n)) for t, n in zip(ids, names)])
    noise, step_noise = model.noises_from_keys(keys, clean.shape[1], clean.shape[2])
    return model(clean, jnp.asarray(text), jnp.asarray(encoder.null), intensity.mu_bin(mu), intensity.sigma_bin(sigma),
                 noise, step_noise)
  ema = "EMA " if weights.used_ema else ""
  return generate, {t: i for i, t in enumerate(types)}, f"gendeg-released {os.path.basename(s.weights)} ({ema}UNet)"


def official_structure_corrector(s):
  """correct(clean, generated) from GenDeg's released structure-correction checkpoint."""
  from jaxdeg.tasks.structure import official_corrector
  fn, params = official_corrector(s.structure_weights, allow_unsafe_pickle=s.allow_unsafe_pickle,
                                  flag="--config.synth.allow_unsafe_pickle=True")
  return jax.jit(lambda clean, generated: fn(params, clean, generated))


def load_captions(path):
  """{image name: caption} from a JSON file: that mapping, or GenDeg's train_csv.json (a list of
  {'filepath', 'title'} whose title ends in its type's text, which is cut off as GenDeg does)."""
  try:
    with open(path) as f:
      content = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"config.synth.captions={path}: cannot read as JSON: {e}") from None
  if isinstance(content, dict) and all(isinstance(v, str) for v in content.values()):
    return content
  if isinstance(content, list) and all(isinstance(d, dict) and "filepath" in d and "title" in d for d in content):
    return {os.path.basename(d["filepath"]): d["title"].rsplit(",", 1)[0] for d in content}
  raise ConfigError(f"config.synth.captions={path}: expected {{image name: caption}} or a list of "
                    "{'filepath', 'title'} (GenDeg's train_csv.json)")


def caption_of(captions, name):
  """The caption of a clean image by its name or file name; '' when there is none."""
  name = str(name)
  return captions.get(name, captions.get(os.path.basename(name), ""))


def structure_corrector(workdir):
  """correct(clean, generated) -> generated + residual, from a `structure` run."""
  config, task, state, _ = runs.load_run(workdir)
  if config.task != "structure":
    raise ConfigError(f"config.synth.structure_workdir={workdir}: a `{config.task}` run, not a `structure` run")
  params = state.inference_params()

  @jax.jit
  def correct(clean, generated):
    return task.model.apply({"params": params}, jnp.concatenate([clean, generated], axis=-1))
  return correct
