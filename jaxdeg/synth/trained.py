"""Trained GenDeg runs as synthesis callables: the LDM generator and the structure corrector."""
import jax
import jax.numpy as jnp

from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.train import runs


def ldm_generator(s):
  """(generate, type_ids, name) from the `ldm` run in s.ldm_workdir: GenDeg sampling with dual
  guidance, `s.steps` steps of `s.sampler`, one key per example."""
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
  params, vae = runs.inference_params(state), state.model_state["vae"]

  def one(clean, type_id, mu, sigma, key):
    out = sampler.sample(params, vae, clean[None], type_id[None], intensity.mu_bin(mu)[None],
                         intensity.sigma_bin(sigma)[None], key, s.text_scale, s.image_scale)
    return out[0]

  # vmapped over examples: each sample depends on its own key only, whatever its batch
  generate = jax.jit(jax.vmap(one))
  return generate, {t: types.index(t) for t in types}, f"gendeg-ldm {s.ldm_workdir} step {step}"


def structure_corrector(workdir):
  """correct(clean, generated) -> generated + residual, from a `structure` run."""
  config, task, state, _ = runs.load_run(workdir)
  if config.task != "structure":
    raise ConfigError(f"config.synth.structure_workdir={workdir}: a `{config.task}` run, not a `structure` run")
  params = runs.inference_params(state)

  @jax.jit
  def correct(clean, generated):
    return task.model.apply({"params": params}, jnp.concatenate([clean, generated], axis=-1))
  return correct
