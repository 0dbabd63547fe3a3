"""How GenDeg's tasks turn batches into (clean, degraded, type id) pairs."""
import jax
import numpy as np
import pytest
from PIL import Image

from jaxdeg.errors import ConfigError
from jaxdeg.models.ldm import DEGRADATION_TYPES
from jaxdeg.tasks.gendeg_data import PairMaker, type_spec
from tests.tasks.gendeg.conftest import vae_config
from tests.utils import load_config


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


def _pillow_stats(clean_path, degraded_path, size=256):
  """GenDeg's intensity statistics, restated with Pillow and numpy: both images resized whole to
  size² with Lanczos, then the mean and standard deviation of |clean − degraded| in [0, 1]."""
  a, b = (np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.LANCZOS), np.float64) / 255
          for p in (clean_path, degraded_path))
  d = np.abs(a - b)
  return d.mean(), d.std()


def test_pairs_get_gendegs_statistics_of_the_whole_image_resized_to_256(tmp_path):
  from jaxdeg.data import from_config
  rng = np.random.default_rng(0)
  want = {}
  for name, (h, w, haze) in {"wide": (200, 300, 0.3), "big": (480, 640, 0.7)}.items():  # 200 < 256: resized
    clean = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    clean = (clean + np.roll(clean, 1, 0) + np.roll(clean, 1, 1)) / 3  # some structure to resample
    ramp = np.linspace(0.1, haze, w)[None, :, None]  # haze thickening left to right
    degraded = clean * (1 - ramp) + 230 * ramp + rng.normal(0, 6, clean.shape)
    paths = []
    for folder, image in (("clean", clean), ("degraded", degraded)):
      (tmp_path / folder).mkdir(exist_ok=True)
      paths.append(str(tmp_path / folder / f"{name}.png"))
      Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(paths[-1])
    want[name] = _pillow_stats(*paths)
  config = load_config("configs/gendeg_ldm.py", data__sources=(dict(kind="paired", path=str(tmp_path), type="haze"),),
                       train__batch_size=2)
  batch = next(iter(from_config.train_data(config)))
  assert batch["clean"].shape == (2, 256, 256, 3)
  got = sorted(zip(batch["mu"].tolist(), batch["sigma"].tolist()))
  ref = sorted(want.values())
  np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
  assert abs(ref[0][0] - ref[1][0]) > 0.05  # the two pairs differ: the match is not by chance
  # the ldm task conditions on those values; pairs without them (NaN) fall back to the device's
  measured = np.full(2, 0.5, np.float32)
  mu, sigma = PairMaker.stats({"mu": np.array([batch["mu"][0], np.nan], np.float32),
                               "sigma": batch["sigma"]}, measured, measured)
  assert mu.tolist() == [batch["mu"][0], 0.5] and sigma.tolist() == [batch["sigma"][0], 0.5]
