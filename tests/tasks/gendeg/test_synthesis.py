"""`--mode=synthesize` with the trained tiny GenDeg runs (LDM + structure correction): shards with
metadata, and every record equals the LDM sampled directly with that job's key, corrected where
its type is configured for it."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.data import records
from jaxdeg.errors import ConfigError
from jaxdeg.synth import run as synth_run
from jaxdeg.synth import synthesize, trained
from tests.utils import load_config

TYPES = ("haze", "low_light")  # the tiny LDM's types


def synth_config(ldm_workdir, structure_workdir, **fields):
  return load_config("configs/gendeg_synthesize.py:tiny", **{
      "synth__generator": "ldm", "synth__ldm_workdir": str(ldm_workdir),
      "synth__structure_workdir": str(structure_workdir), "synth__types": TYPES,
      "synth__structure_types": ("haze",), "synth__steps": 2, "synth__batch_size": 3,
      "synth__tolerance_abs": 1.0,  # keep every sample: this test checks what is written
      "synth__clean_sources": ({"kind": "samples", "photos": ("astronaut", "coffee", "rocket")},), **fields})


@pytest.fixture(scope="module")
def synthesised(tmp_path_factory, ldm_run, structure_run):
  structure_workdir, _ = structure_run
  config = synth_config(ldm_run[0], structure_workdir)
  workdir = tmp_path_factory.mktemp("ldm_synth")
  summary = synth_run.run(config, str(workdir))
  recs = []
  for name in sorted(os.listdir(workdir)):
    if name.endswith(".array_record"):
      from array_record.python import array_record_module
      reader = array_record_module.ArrayRecordReader(str(workdir / name))
      recs += [records.unpack(r) for r in reader.read_all()]
      reader.close()
  return config, summary, recs


def test_ldm_synthesis_writes_every_job_with_its_metadata(synthesised):
  _, summary, recs = synthesised
  assert summary["jobs"] == summary["kept"] == len(recs) == 3 * len(TYPES) and summary["dropped"] == 0
  assert [r["meta"]["job"] for r in recs] == list(range(6))
  for r in recs:
    m = r["meta"]
    assert r["degraded"].shape == (64, 64, 3) and r["degraded"].dtype == np.uint8
    # type by type (GenDeg's runs), every image once per type
    assert m["generator"].startswith("gendeg-ldm ") and m["type"] == TYPES[m["job"] // 3]
    assert m["image"] == m["job"] % 3 and m["condition"] == m["type"]
    assert m["structure_corrected"] == (m["type"] == "haze")
    assert 0 <= m["mu"] <= 1 and np.isfinite(m["mu_achieved"])


def test_each_record_is_the_ldm_sample_of_its_job(synthesised):
  config, _, recs = synthesised
  s = synth_run.defaults()
  s.update(config.synth)
  generate, type_ids, _ = trained.ldm_generator(s)
  correct = trained.structure_corrector(s.structure_workdir)
  key = jax.random.PRNGKey(s.seed)
  clean = jnp.asarray(np.stack([r["clean"] for r in recs]).astype(np.float32) / 255.0)
  # synthesis resizes the clean images itself; the record's clean image is that resize in uint8
  images, _ = synthesize.clean_images(s)
  exact = np.stack([images[r["meta"]["image"]]["clean"] for r in recs]).astype(np.float32)
  np.testing.assert_allclose(np.asarray(clean), exact, atol=0.5 / 255)
  keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(6, dtype=jnp.uint32))
  tid = jnp.asarray([type_ids[r["meta"]["type"]] for r in recs], jnp.int32)
  mu = jnp.asarray([r["meta"]["mu"] for r in recs], jnp.float32)
  sigma = jnp.asarray([r["meta"]["sigma"] for r in recs], jnp.float32)
  # all six jobs in one call: results must not depend on the batch they were made in
  out = generate(jnp.asarray(exact), tid, mu, sigma, keys)
  haze = jnp.asarray([r["meta"]["type"] == "haze" for r in recs])[:, None, None, None]
  out = np.asarray(jnp.clip(jnp.where(haze, correct(jnp.asarray(exact), out), out), 0.0, 1.0))
  want = np.round(out * 255.0).astype(np.int16)
  got = np.stack([r["degraded"] for r in recs]).astype(np.int16)
  assert np.abs(want - got).max() <= 1, np.abs(want - got).max()
  # ... and the LDM did something: the samples are not the clean images
  assert np.abs(got - np.round(exact * 255)).mean() > 2


def test_ldm_synthesis_refuses_types_the_model_does_not_know(ldm_run, tmp_path):
  config = synth_config(ldm_run[0], "", synth__types=("haze", "fog"))
  with pytest.raises(ConfigError, match="fog"):
    synth_run.run(config, str(tmp_path))
