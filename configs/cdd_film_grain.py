"""The universal degradation model, fine-tuned on AV1 film grain from a general model.

  python -m jaxdeg.main --config=configs/cdd_film_grain.py:/data/photos --workdir=runs/cdd_grain \\
      --config.init_from=runs/cdd --mode=train
  python -m jaxdeg.main --config=configs/cdd_film_grain.py:pairs=/data/grain --workdir=runs/cdd_grain \\
      --config.init_from=runs/cdd --mode=train
  # from the authors' released general model (an official checkpoint file), as the paper does:
  python -m jaxdeg.main --config=configs/cdd_film_grain.py:pairs=/data/grain,released=/weights/latest.pt \\
      --workdir=runs/cdd_grain --mode=train

Two kinds of data:
- a folder of clean photos (the argument): each crop gets AV1 grain from jaxdeg's bit-exact
  `film_grain` degradation, one source per libaom test preset (1..16), strength 0.5–1.5× the
  coded scaling functions;
- `pairs=ROOT`: real decoder pairs, ROOT/train and ROOT/test each holding clean/ (dav1d
  --filmgrain 0) and degraded/ (dav1d --filmgrain 1) with the same file names, e.g. from
  `aomenc --film-grain-test=N` or `--film-grain-table=T`, decoded twice.
`init_from` must name a run of configs/cdd_general.py with the same model fields (set it with
--config.init_from; the paper fine-tunes its film-grain model from the general one), or an official
checkpoint file: `,released=FILE` after the data argument sets init_from to it and
model.official_input_scaling (the official generator reads 2x − 1); the model fields are the paper's.
Variant `tiny`: the tiny model of cdd_general.py:tiny on the bundled photos with two presets (tests).
"""
import importlib.util
import os

from jaxdeg.train.defaults import base_config

_spec = importlib.util.spec_from_file_location("cdd_general", os.path.join(os.path.dirname(__file__), "cdd_general.py"))
general = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(general)

PRESETS = tuple(range(1, 17))
GRAIN_STRENGTH = (0.25, 0.75)  # film_grain intensity: scale = 2·intensity of the coded set


def grain_sources(make, presets=PRESETS):
  return tuple(make(degradations=[dict(name="film_grain", params=p, intensity=GRAIN_STRENGTH)],
                    label=f"AV1 preset {p}") for p in presets)


def get_config(arg=None):
  released = None
  if arg and ",released=" in arg:
    arg, released = arg.split(",released=", 1)
  c = _config(arg)
  if released:
    c.init_from = released
    c.model.official_input_scaling = True
  return c


def _config(arg):
  c = general.common(base_config())
  # L_sim = 10·DISTS + 10·L1: DISTS joins when the user sets loss.vgg16_weights and loss.dists_weights
  c.loss = general.loss_config(l1_weight=10.0, rate_global_weight=0.002, rate_local_weight=0.05, gan_weight=10.0)
  # eval: clean photos with one preset; reference and target share the grain seed and strength
  c.data.eval_degradations = [dict(name="film_grain", params=2, intensity=GRAIN_STRENGTH)]
  # jaxdeg.cdd_eval adds the grain statistics table (curve, spectrum, JSD; best-fit AV1 baseline)
  c.eval.grain_stats = True
  eval_photos = general.EVAL_PHOTOS * 2
  if arg == "tiny":
    c.data.sources = grain_sources(lambda **kw: dict(kind="samples", photos=general.TRAIN_PHOTOS, **kw), presets=(2, 6))
    c.model = general.model_config(global_dim=16, encoder_dim=16, local_latent=8, generator_width=8,
                           generator_blocks=(1, 1, 1, 1, 1))
    c.critic.width = 8
    c.data.crop, c.data.eval_crop = 32, 64
    c.train.steps, c.train.batch_size, c.eval.batch_size = 20, 8, 8
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 5, 20, 20
    c.data.eval_sources = (dict(kind="samples", photos=eval_photos, label="held-out photos"),)
    return c
  c.data.crop, c.data.eval_crop = 128, 192
  c.train.steps = 100_000          # unknown (a fine-tuning run)
  c.train.batch_size = 24
  c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 100, 5_000, 5_000
  if arg and arg.startswith("pairs="):
    root = arg[len("pairs="):]
    c.data.sources = (dict(kind="paired", path=f"{root}/train", type="film_grain", label="AV1 pairs"),)
    # consecutive test pairs share the grain of their encode: one table per test folder
    c.data.eval_sources = (dict(kind="paired", path=f"{root}/test", type="film_grain", label="AV1 test pairs"),)
  else:
    c.data.sources = grain_sources(lambda **kw: dict(kind="folder", path=arg or "/data/photos", **kw))
    c.data.eval_sources = (dict(kind="samples", photos=eval_photos, label="held-out photos"),)
  return c
