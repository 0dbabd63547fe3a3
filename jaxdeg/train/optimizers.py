"""The one optimizer factory: an optax transform from a config's `optimizer` section.

    from_config(config.optimizer, config.train, groups=None, labels=None, prefix="")

reads, from the section (`prefix` first: `critic_learning_rate` before `learning_rate`, for a
task's second network):
  learning_rate            peak (or constant) learning rate
  warmup_steps             linear warm-up from 0 over this many updates (0/absent: none)
  final_lr_fraction        present: cosine decay after the warm-up to this fraction of the learning
                           rate at the last update (train.steps / train.accumulate_steps updates);
                           absent: the rate stays constant after the warm-up
  b1, b2, eps              Adam's moments (eps 1e-8 when absent)
  weight_decay             present: AdamW with this decoupled decay; absent: Adam
  grad_clip                > 0: global-norm clipping of all the gradients first (0/absent: none)
`groups` {label: {field: value}} gives parameter groups their own fields (a learning rate, say),
`labels` (params → a tree or prefix tree of those labels) says which parameter is in which group.
The transform is wrapped for gradient accumulation (`jaxdeg.train.state.accumulating`).
"""
import optax

from jaxdeg.errors import ConfigError
from jaxdeg.train.state import accumulate_steps, accumulating


def _field(opt, prefix, name, default=None):
  for key in (prefix + name, name) if prefix else (name,):
    if key in opt and opt[key] is not None:
      return opt[key]
  return default


def _learning_rate(fields, total_updates, where):
  lr, warmup = fields["learning_rate"], int(fields.get("warmup_steps") or 0)
  if fields.get("final_lr_fraction") is not None:
    if total_updates is None:
      raise ConfigError(f"{where}.final_lr_fraction: a decaying schedule needs the run's length (config.train.steps)")
    warmup = min(warmup, max(total_updates - 1, 0))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_updates, warmup + 1),
                                              end_value=lr * fields["final_lr_fraction"])
  return optax.linear_schedule(0.0, lr, warmup) if warmup else lr


def _adam(fields, total_updates, where):
  lr = _learning_rate(fields, total_updates, where)
  kwargs = dict(b1=fields.get("b1", 0.9), b2=fields.get("b2", 0.999), eps=fields.get("eps", 1e-8))
  if fields.get("weight_decay") is not None:
    return optax.adamw(lr, weight_decay=fields["weight_decay"], **kwargs)
  return optax.adam(lr, **kwargs)


FIELDS = ("learning_rate", "warmup_steps", "final_lr_fraction", "b1", "b2", "eps", "weight_decay", "grad_clip")


def build(opt, total_updates=None, *, groups=None, labels=None, prefix="", where="config.optimizer"):
  """The optax transform `opt` describes (see the module docstring), without accumulation."""
  fields = {name: value for name in FIELDS if (value := _field(opt, prefix, name)) is not None}
  if "learning_rate" not in fields:
    raise ConfigError(f"{where}.{prefix}learning_rate is not set")
  if groups:
    tx = optax.multi_transform({label: _adam({**fields, **changes}, total_updates, where)
                                for label, changes in groups.items()}, labels)
  else:
    tx = _adam(fields, total_updates, where)
  clip = fields.get("grad_clip") or 0.0
  return optax.chain(optax.clip_by_global_norm(clip), tx) if clip > 0 else tx


def from_config(opt, train, **kwargs):
  """`build` over the run's optimizer updates (train.steps micro-batches / train.accumulate_steps),
  wrapped to accumulate gradients over train.accumulate_steps micro-batches."""
  steps = train.get("steps")
  total_updates = None if steps is None else steps // accumulate_steps(train)
  return accumulating(build(opt, total_updates, **kwargs), train)
