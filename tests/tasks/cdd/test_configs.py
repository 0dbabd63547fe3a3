"""The `cdd` configs build their task (no compilation): general and film grain, every variant."""
import pytest

from jaxdeg.errors import ConfigError
from jaxdeg.tasks import cdd
from tests.utils import load_config


def test_general_configs():
  full = load_config("configs/cdd_general.py:/data/photos")
  task = cdd.CddTask(full)
  assert task.model.generator_blocks == (4, 3, 2, 3, 4) and task.model.global_dim == 256
  assert (full.data.crop, full.train.batch_size) == (128, 24)
  assert (full.loss.rate_global_weight, full.loss.rate_local_weight) == (1e-4, 1.0)
  assert [s["path"] for s in full.data.sources] == ["/data/photos"] * 2 and task.procedural_eval
  for variant in ("tiny", "cpu"):
    c = load_config(f"configs/cdd_general.py:{variant}")
    assert all(s["kind"] == "samples" for s in c.data.sources)
    cdd.CddTask(c)


def test_film_grain_configs_fine_tune_the_general_model():
  tiny = load_config("configs/cdd_film_grain.py:tiny")
  cdd.CddTask(tiny)
  # init_from needs the same architecture as the general run it starts from
  assert tiny.model.to_dict() == load_config("configs/cdd_general.py:tiny").model.to_dict()
  assert (tiny.loss.rate_global_weight, tiny.loss.rate_local_weight, tiny.loss.gan_weight) == (0.002, 0.05, 10.0)
  assert [s["degradations"][0]["params"] for s in tiny.data.sources] == [2, 6]
  photos = load_config("configs/cdd_film_grain.py:/data/photos")
  assert len(photos.data.sources) == 16 and photos.init_from is None
  pairs = cdd.CddTask(load_config("configs/cdd_film_grain.py:pairs=/data/grain"))
  assert not pairs.procedural_eval and pairs.config.data.sources[0]["path"] == "/data/grain/train"


def test_config_mistakes_are_clear():
  with pytest.raises(ConfigError, match="config.model: .*unexpected keyword"):
    cdd.CddTask(load_config("configs/cdd_general.py:tiny", model__no_such_field=1))
  with pytest.raises(ConfigError, match="eval_degradations is empty"):
    cdd.CddTask(load_config("configs/cdd_general.py:tiny", data__eval_degradations=[]))
  with pytest.raises(ConfigError, match="need 'degradations'"):
    cdd.CddTask(load_config("configs/cdd_general.py:tiny",
                            data__sources=(dict(kind="samples", photos=("astronaut",)),)))


def test_perceptual_loss_files_are_checked_not_ignored():
  assert cdd.CddTask(load_config("configs/cdd_general.py:tiny")).perceptual == {}  # off without files
  with pytest.raises(ConfigError, match=r"config\.loss\.dists_weights set but config\.loss\.vgg16_weights is not"):
    cdd.CddTask(load_config("configs/cdd_general.py:tiny", loss__dists_weights="/weights/dists.npz"))
  with pytest.raises(ConfigError, match=r"config\.loss\.vgg16_weights: /weights/vgg16\.pth: no such weight file"):
    cdd.CddTask(load_config("configs/cdd_general.py:tiny", loss__dists_weights="/weights/dists.npz",
                            loss__vgg16_weights="/weights/vgg16.pth"))
  with pytest.raises(ConfigError, match="degraded_key=False"):
    cdd.CddTask(load_config("configs/cdd_general.py:tiny", data__degraded_key=False))
