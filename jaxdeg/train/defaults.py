"""Fields every experiment config shares; each config file starts from `base_config()`."""
import ml_collections
from ml_collections import config_dict

from jaxdeg.errors import ConfigError
from jaxdeg.train.partitioning import DEFAULT_RULES

# Fields that count things: refused when the config is read, not as a ZeroDivisionError (or a run
# that trains nothing and exits 0) later. Fields a config lacks, or sets to None, are not checked.
_AT_LEAST = {"train.steps": 1, "train.batch_size": 1, "train.log_every": 1, "train.checkpoint_every": 1,
             "train.keep_checkpoints": 1, "train.eval_every": 0, "eval.batch_size": 1, "data.crop": 1,
             "data.eval_crop": 1, "data.worker_count": 0, "data.max_pixels": 1}

# Full-resolution restoration in overlapping tiles (the restore task's eval.full_resolution and
# `jaxdeg restore`): tile² pixels, overlapping by tile_overlap, tile_batch tiles per call.
TILING = dict(tile=256, tile_overlap=32, tile_batch=8)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = ""
  c.seed = 0
  # Device mesh: axes ('data', 'fsdp'); -1 fills with the remaining devices.
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, num_devices=-1))
  # Logical parameter axis -> mesh axis (None = replicated).
  c.sharding = ml_collections.ConfigDict(dict(rules=DEFAULT_RULES))
  # Start from another run's latest checkpoint (params, model state, EMA) when this workdir has none.
  c.init_from = config_dict.placeholder(str)

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000
  c.train.batch_size = 8                  # global, over all processes and devices
  # One optimizer update every accumulate_steps batches, on their mean gradient (= one batch of
  # accumulate_steps × batch_size); train.steps and the step counters count batches.
  c.train.accumulate_steps = 1
  c.train.log_every = 50
  c.train.eval_every = 500                # 0 disables periodic eval
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.progress_every_secs = 30.0
  c.train.tensorboard = True              # TensorBoard events (clu, needs TensorFlow); else log + PNG

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 8
  c.eval.grid_name = "eval.png"           # written into the workdir by --mode=evaluate
  c.eval.grid_rows = 4
  # Restore task: evaluate each eval image at its own size (the benchmark protocols) instead of
  # batched centre crops of data.eval_crop, restored in tiles of tile² overlapping by tile_overlap
  # pixels, tile_batch tiles per call (rounded up to a multiple of the local devices).
  c.eval.full_resolution = False
  c.eval.update(TILING)
  # LPIPS in evaluation (restore task), from the user's files: torchvision's vgg16 state dict and
  # the lpips package's weights/v0.1/vgg.pth (or .npz copies); unset: no LPIPS
  c.eval.vgg16_weights = config_dict.placeholder(str)
  c.eval.lpips_weights = config_dict.placeholder(str)
  # FID in evaluation (restore task): pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or an
  # .npz copy); unset: no FID
  c.eval.inception_weights = config_dict.placeholder(str)

  c.data = ml_collections.ConfigDict()
  c.data.worker_count = 0                 # grain mp_prefetch workers (0 = in-process)
  c.model = ml_collections.ConfigDict()
  c.optimizer = ml_collections.ConfigDict()
  return c


def check(config):
  """ConfigError naming the first counting field with a nonsensical value (see _AT_LEAST)."""
  for field, minimum in _AT_LEAST.items():
    value = config
    for part in field.split("."):
      value = value.get(part) if hasattr(value, "get") else None
    if value is None:
      continue
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
      raise ConfigError(f"config.{field}={value!r}: must be an integer >= {minimum}")
