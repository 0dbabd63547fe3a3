"""What the generic trainer needs from a task. Tasks are where a model meets a loss."""
import abc
from typing import Any, Iterable, Iterator, Optional

import grain
import jax

from jaxdeg.errors import ConfigError
from jaxdeg.train.state import TrainState

Batch = dict[str, Any]


class Task(abc.ABC):
  """A trainable thing: state init, a pure train step, a pure eval step, and its data.

  `train_step` and `eval_step` are jitted by the trainer with the mesh shardings; they
  must be pure functions of their arguments (randomness from `state.step_rng()`).
  """

  def __init__(self, config):
    self.config = config

  @abc.abstractmethod
  def init_state(self, rng: jax.Array) -> TrainState:
    """A fresh state. Params may be boxed with logical axis names (the trainer unboxes)."""

  @abc.abstractmethod
  def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One update. Metrics are scalars; the trainer stops on a non-finite 'loss'."""

  @abc.abstractmethod
  def eval_step(self, state: TrainState, batch: Batch) -> dict[str, dict[str, jax.Array]]:
    """{'metrics': {name: per-example values (B,)}, 'images': {name: (B, H, W, 3) in [0,1]},
    'groups' (optional): {field: per-example int ids (B,)}}.

    Metrics are averaged over the examples whose batch['mask'] is 1, overall and per group id
    (named by `group_names()`); the images of the first batch become a grid with one row per
    example and one column per entry, in order.
    """

  @abc.abstractmethod
  def train_data(self) -> grain.IterDataset:
    """This process's infinite iterable of batches (numpy), checkpointable by grain."""

  @abc.abstractmethod
  def eval_data(self) -> Iterable[Batch]:
    """This process's finite iterable of eval batches (numpy), each with a 0/1 'mask'."""

  def group_names(self) -> dict[str, tuple[str, ...]]:
    """Names of the ids in eval_step's 'groups' ({field: names}); none by default."""
    return {}

  def params_from_foreign_checkpoint(self, path: str, state: TrainState) -> Optional[TrainState]:
    """For `config.init_from` naming a file (e.g. a paper's released weights) rather than a run:
    `state` (freshly initialised) with what the file holds put in (host arrays are fine; the
    trainer places them on the mesh). None: this task starts only from runs."""
    return None

  def data_iterator(self) -> Iterator[Batch]:
    return iter(self.train_data())

  def eval_features(self, images: dict[str, jax.Array]) -> Optional[dict[str, jax.Array]]:
    """Per-example feature sets of one eval batch's images ({name: (B, D)}, one of them 'target'),
    e.g. Inception features; the trainer reports the FID of each set against 'target'. None: no
    features (the default)."""
    del images
    return None

  # Whether eval_full_resolution is implemented (the trainer refuses config.eval.full_resolution
  # before training otherwise); by default a task evaluates crops only.
  full_resolution_eval = False

  def eval_full_resolution(self, state: TrainState) -> Iterator[dict[str, Any]]:
    """eval_step's output (batches of one) for every eval image at its own size, for
    `config.eval.full_resolution`. A task that evaluates crops only refuses the setting."""
    del state
    raise self.crops_only_error()

  def crops_only_error(self) -> ConfigError:
    return ConfigError(f"config.eval.full_resolution=True: the {self.config.task} task evaluates crops only; "
                       "set it to False")

  def write_latent_cache(self) -> Any:
    """--mode=cache_latents: encodes training batches once into `config.data.latent_cache`."""
    raise ConfigError(f"--mode=cache_latents: task {self.config.task!r} has no latent cache (the ldm task has)")
