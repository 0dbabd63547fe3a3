"""GenDeg's CLIP text conditioning in the ldm task: GenDeg's prompts encoded once into the train
state, the context built as ddpm_edit.py builds it (cc_projection(CLIP(prompt) ‖ stats_proj(μσ)ᵀ)),
dropped text → CLIP(""), sampling with the type prompts and with per-image prompts, bad configs.
A tiny random CLIP (width 32 = the tiny UNet's cross-attention width) in a diffusers-style folder
with the tiny UNet's VAE, CLIP's vocabulary from open_clip (config.context.vocabulary)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import tasks
from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.models.ldm.conditioning import gendeg_prompt
from jaxdeg.synth import trained
from jaxdeg.tasks import ldm
from jaxdeg.text import encode
from jaxdeg.train import partitioning
from tests.tasks.gendeg.conftest import ONE_DEVICE
from tests.text import helpers
from tests.utils import load_config


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
  from tests.models.ldm.torch_ref import torch_vae
  folder = tmp_path_factory.mktemp("clip_pipeline")
  torch_vae().save_pretrained(str(folder / "vae"))
  helpers.torch_clip(seed=4, **helpers.TINY_CLIP).save_pretrained(str(folder / "text_encoder"))
  return folder


def clip_config(folder, **fields):
  return load_config("configs/gendeg_ldm.py:tiny", **{
      "vae__diffusers_path": str(folder), "context__text_encoder": "clip",
      "context__text_encoder_weights": str(folder), "context__vocabulary": helpers.vocabulary()[1],
      **ONE_DEVICE, **fields})


@pytest.fixture(scope="module")
def initialised(pipeline):
  task = tasks.get(clip_config(pipeline))
  return task, partitioning.unbox(jax.jit(task.init_state)(jax.random.PRNGKey(0)))


def test_prompts_encoded_once_into_the_state_and_gendeg_context(pipeline, initialised):
  task, state = initialised
  types = task.context.types
  encoder = encode.PromptEncoder.load(str(pipeline), helpers.vocabulary()[1], max_length=task.context.context_len)
  table = np.asarray(state.model_state["text"])
  assert table.shape == (len(types) + 1, 4, 32)
  np.testing.assert_allclose(table, encoder([gendeg_prompt(t) for t in types] + [""]), atol=1e-5)
  assert set(state.params["context"]) == {"stats_proj", "cc_projection"}  # no type tokens
  # the context as GenDeg's get_input builds it, in numpy
  type_ids = jnp.array([types.index("haze"), len(types)])  # the second as dropped: null text CLIP("")
  stats = intensity.stats_one_hot(jnp.array([0.2, 0.1]), jnp.array([0.05, 0.02]), null=jnp.array([False, True]))
  p = jax.tree.map(np.asarray, state.params["context"])
  text = np.asarray(task.type_text(state.model_state, type_ids))
  np.testing.assert_array_equal(text[1], encoder.null)
  s = np.asarray(stats) @ p["stats_proj"]["kernel"] + p["stats_proj"]["bias"]  # (B, 2, L)
  want = np.concatenate([text, s.transpose(0, 2, 1)], -1) @ p["cc_projection"]["kernel"] + p["cc_projection"]["bias"]
  got = task.context.apply({"params": state.params["context"]}, stats, text=jnp.asarray(text))
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_train_step_and_sampler_with_type_and_per_image_prompts(pipeline, initialised):
  task, state = initialised
  rng = np.random.default_rng(0)
  clean = rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
  # the step traces with the table (compiled and run in token mode by test_ldm.py)
  new, metrics = jax.eval_shape(task.train_step, state, {"image": clean})
  assert metrics["loss"].shape == () and new.model_state["text"].shape == state.model_state["text"].shape

  sampler = ldm.Sampler(task, 1)
  table = state.model_state["text"]
  haze, low = task.context.types.index("haze"), task.context.types.index("low_light")
  args = (state.params, state.model_state["vae"], clean, np.array([haze, low], np.int32), np.array([10, 40], np.int32),
          np.array([5, 20], np.int32), jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)]))
  by_type = np.asarray(sampler(*args, text=table))
  assert by_type.shape == (2, 32, 32, 3) and np.isfinite(by_type).all()
  # per-image rows (example i reads row i; the last row is the null text): the same prompts give the
  # same samples (rows padded to the table's length: the same compiled sampler)
  rows = table.at[0].set(table[haze]).at[1].set(table[low])
  per_image = np.asarray(sampler(args[0], args[1], clean, np.array([0, 1], np.int32), *args[4:], text=rows))
  np.testing.assert_allclose(per_image, by_type, atol=1e-5)
  with pytest.raises(ConfigError, match="conditioned on CLIP text: pass the sampler text="):
    sampler.sample(*args)


def test_bad_text_configs_are_one_line(pipeline, tmp_path):
  cases = [(dict(context__text_encoder="bert"), "config.context.text_encoder='bert'"),
           (dict(context__text_encoder_weights=None), "needs config.context.text_encoder_weights"),
           (dict(context__text_encoder_weights=str(tmp_path / "nowhere")), "nowhere: no such file or folder"),
           (dict(model__cross_attention_dim=16), "CLIP width 32 differs from the UNet's cross_attention_dim 16"),
           (dict(context__vocabulary=str(tmp_path)), "config.context.vocabulary: .*no CLIP BPE vocabulary found"),
           (dict(context__types=("haze", "fog")), "unknown degradation type 'fog'")]
  for fields, words in cases:
    with pytest.raises(ConfigError, match=words) as e:
      task = tasks.get(clip_config(pipeline, **fields))
      task.text.setup  # the files are checked when a state is first made
    assert "\n" not in str(e.value)


def test_synthesis_captions(tmp_path):
  (tmp_path / "c.json").write_text(json.dumps({"street.png": "a busy street"}))
  gendeg_csv = [{"filepath": "/data/GenIRData/x/street.png", "title": "a busy street, in rainy conditions"}]
  (tmp_path / "g.json").write_text(json.dumps(gendeg_csv))
  for f in ("c.json", "g.json"):
    captions = trained.load_captions(str(tmp_path / f))
    assert trained.caption_of(captions, "clean/street.png") == "a busy street"
    assert gendeg_prompt("haze", trained.caption_of(captions, "street.png")) == "a busy street, in hazy conditions"
    assert trained.caption_of(captions, "other.png") == ""
  (tmp_path / "bad.json").write_text("[1, 2]")
  with pytest.raises(ConfigError, match="bad.json: expected"):
    trained.load_captions(str(tmp_path / "bad.json"))
