"""How GenDeg's tasks turn batches into (clean, degraded, type id) pairs."""
import jax
import numpy as np
import pytest

from jaxdeg.errors import ConfigError
from jaxdeg.models.ldm import DEGRADATION_TYPES
from jaxdeg.tasks.gendeg_data import PairMaker, type_spec
from tests.gendeg.conftest import vae_config


def test_real_pairs_keep_their_images_and_map_labels_to_type_tokens():
  config = vae_config(data__sources=(dict(kind="paired", path="/data/SOTS", layout="sots"),
                                     dict(kind="paired", path="/data/x", type="gaussian_noise"),
                                     dict(kind="paired", path="/data/y", type="snow")))
  pairs = PairMaker(config, ("haze",), (0.1, 1.0), DEGRADATION_TYPES)
  rng = np.random.default_rng(0)
  batch = {"clean": rng.random((4, 8, 8, 3), np.float32), "degraded": rng.random((4, 8, 8, 3), np.float32),
           # data labels: sorted ('gaussian_noise', 'haze', 'snow'); -1 = unlabelled
           "type": np.array([1, 2, 0, -1], np.int32)}
  clean, degraded, type_ids = pairs.train_pairs(jax.random.PRNGKey(0), batch)
  np.testing.assert_array_equal(clean, batch["clean"])
  np.testing.assert_array_equal(degraded, batch["degraded"])
  null = len(DEGRADATION_TYPES)
  assert type_ids.tolist() == [DEGRADATION_TYPES.index("haze"), DEGRADATION_TYPES.index("snow"), null, null]


def test_mixtures_are_stages_in_order():
  assert [s["name"] for s in type_spec("snow+haze", (0.2, 0.5))] == ["snow", "haze"]


@pytest.mark.parametrize("field,value,message", [
    ("types", (), r"config\.pairs\.types is empty"),
    ("intensity", (0.5, 0.2), r"config\.pairs\.intensity=\(0\.5, 0\.2\)"),
])
def test_bad_pairs_fields_are_clear_errors(field, value, message):
  kwargs = dict(types=("haze",), intensity=(0.1, 1.0))
  kwargs[field] = value
  with pytest.raises(ConfigError, match=message):
    PairMaker(vae_config(), kwargs["types"], kwargs["intensity"], DEGRADATION_TYPES)
