"""Fine-tuning the universal degradation model from the authors' released weights: an official
checkpoint file (jaxdeg.interop.cdd_torch) → the cdd task's train state.

The model's fields must describe the checkpoint's network (checked field by field against the
shapes in the file, with a message naming each config.model field to change). The critic is taken
from netP when the file has it and it fits config.critic (strategy, width, crop); otherwise it
keeps its fresh initialisation: the released general model ships without a trained critic, and the
authors advise training the critic alone for a while before fine-tuning. MoCo's key encoder starts
as a copy of the imported global encoder (the official code loads only the query encoder, leaving
the key encoder at its random initialisation; a copy is the state MoCo itself starts from). The
queue and the optimiser states stay fresh.
"""
import jax
from absl import logging

from jaxdeg.errors import ConfigError
from jaxdeg.interop import cdd_torch


def _same(a, b):
  return tuple(a) == tuple(b) if isinstance(a, (tuple, list)) else a == b


def check_model(model, parts, path):
  """ConfigError naming every config.model field that differs from the checkpoint's network."""
  wrong = [f"config.model.{k}={getattr(model, k)!r} (the checkpoint's: {v!r})"
           for k, v in cdd_torch.model_kwargs(parts).items() if not _same(getattr(model, k), v)]
  if not model.official_input_scaling:
    wrong.append("config.model.official_input_scaling=False (official weights need True: their generator "
                 "reads 2x − 1)")
  if wrong:
    raise ConfigError(f"{path}: config.model does not describe the checkpoint's network: " + "; ".join(wrong))


def _shapes(tree):
  return jax.tree.map(lambda a: tuple(a.shape), tree)


def state_from_official(task, path, state):
  parts, info = cdd_torch.read_checkpoint(path)
  check_model(task.model, parts, path)
  ms = state.model_state
  target = {"params": state.params["model"], "batch_stats": ms["batch_stats"]}
  variables = cdd_torch.convert(parts, task.model, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                                                target))
  critic = state.params["critic"]
  if "netP" in parts:
    imported = cdd_torch.convert_critic(parts["netP"], task.critic_strategy)
    if _shapes(imported.params) != _shapes(critic):
      raise ConfigError(f"{path}: its critic (netP: width {imported.critic.width}, {imported.size}² inputs, "
                        f"'{imported.strategy}') does not fit config.critic.width={task.critic.width} at "
                        f"config.data.crop={task.config.data.crop}")
    critic = imported.params
  else:
    logging.info("%s has no critic (netP): the critic starts from its initialisation", path)
  logging.info("initialised the model from the official checkpoint %s (%s)", path,
               ", ".join(f"{k} {v}" for k, v in info.items()) or "no step recorded")
  encoder = {"params": variables["params"]["global_encoder"], "batch_stats": variables["batch_stats"]["global_encoder"]}
  return state.replace(params={"model": variables["params"], "critic": critic},
                       model_state={**ms, "batch_stats": variables["batch_stats"], "key_encoder": encoder})
