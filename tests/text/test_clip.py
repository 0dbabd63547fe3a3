"""The Flax CLIP text transformer against transformers' PyTorch CLIPTextModel (random init), its
weight import (diffusers folder, SD-1.x single-file keys, bad weights) and the cached prompt encoder."""

import jax
import numpy as np
import pytest

from jaxdeg.interop import clip_text
from jaxdeg.interop.diffusers import WeightImportError
from jaxdeg.models.text import CLIPTextTransformer
from jaxdeg.text import encode
from tests.text import helpers

VIT_L14 = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
               max_position_embeddings=77)


def _ids(batch, length=77, seed=0):
  """SD-style rows: start token, random text tokens, end token, end-token padding."""
  rng = np.random.default_rng(seed)
  ids = np.full((batch, length), 49407, np.int64)
  ids[:, 0] = 49406
  for i, n in enumerate(rng.integers(3, length - 1, batch)):
    ids[i, 1:n] = rng.integers(0, 49406, n - 1)
  return ids


@pytest.fixture(scope="module")
def vit_l14():
  model = helpers.torch_clip(**VIT_L14)
  return model, helpers.numpy_state_dict(model)


def test_vit_l14_matches_transformers(vit_l14):
  torch_model, state_dict = vit_l14
  params = clip_text.text_encoder_params(state_dict)  # default sizes: ViT-L/14
  del state_dict
  ids = _ids(2)
  want = helpers.torch_hidden(torch_model, ids)
  got = np.asarray(jax.jit(CLIPTextTransformer().apply)({"params": params}, ids))
  err = float(np.abs(got - want).max())
  print(f"ViT-L/14 text encoder, batch 2 × 77: max |flax − torch| = {err:.2e} (hidden state max |x| "
        f"{np.abs(want).max():.2f})")
  assert got.shape == (2, 77, 768) and err <= 1e-4


def test_import_from_folder_and_single_file(tmp_path):
  import safetensors.numpy
  torch_model = helpers.torch_clip(seed=1, **helpers.TINY_CLIP)
  torch_model.save_pretrained(str(tmp_path / "pipe" / "text_encoder"))
  model, variables = clip_text.import_text_encoder(str(tmp_path / "pipe"))
  assert (model.width, model.num_layers, model.heads, model.mlp_width) == (32, 2, 2, 64)
  ids = _ids(2, seed=1)
  want = helpers.torch_hidden(torch_model, ids)
  np.testing.assert_allclose(np.asarray(model.apply(variables, ids)), want, atol=1e-5)

  # an SD-1.x single file: cond_stage_model.transformer.* (position_ids buffer included), no config
  sd = {"cond_stage_model.transformer." + k: v for k, v in helpers.numpy_state_dict(torch_model).items()}
  sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = np.arange(77, dtype=np.int64)[None]
  sd["model.diffusion_model.out.0.weight"] = np.zeros((4,), np.float32)
  safetensors.numpy.save_file(sd, str(tmp_path / "sd.safetensors"))
  assert encode.load_text_encoder(str(tmp_path / "sd.safetensors"))[0].heads == 1  # width / 64: shapes hide heads
  model2, params = encode.load_text_encoder(str(tmp_path / "sd.safetensors"), heads=2)
  np.testing.assert_allclose(np.asarray(model2.apply({"params": params}, ids)), want, atol=1e-5)


def test_bad_weights_are_one_line():
  sd = helpers.numpy_state_dict(helpers.torch_clip(seed=2, **helpers.TINY_CLIP))
  model = CLIPTextTransformer(width=32, num_layers=2, heads=2, mlp_width=64)
  bad = dict(sd)
  del bad["text_model.encoder.layers.1.mlp.fc2.bias"]
  bad["text_model.embeddings.token_embedding.weight"] = np.zeros((49408, 16), np.float32)
  bad["text_model.encoder.layers.0.extra.weight"] = np.zeros((3,), np.float32)
  with pytest.raises(WeightImportError) as e:
    clip_text.text_encoder_params(bad, model)
  message = str(e.value)
  assert "\n" not in message
  for words in ("text_model.embeddings.token_embedding.weight: file (49408, 16)", "wants (49408, 32)",
                "encoder/layers_1/mlp/fc2/bias", "text_model.encoder.layers.0.extra.weight"):
    assert words in message, message
  with pytest.raises(WeightImportError, match="shape mismatch"):  # ViT-L/14 sizes by default
    clip_text.text_encoder_params(sd)
  with pytest.raises(WeightImportError, match="hidden_act 'gelu' unsupported"):
    clip_text.text_encoder_kwargs({"hidden_act": "gelu"})


def test_prompt_encoder_caches_and_matches_torch(tmp_path):
  torch_model = helpers.torch_clip(seed=3, **helpers.TINY_CLIP)
  torch_model.save_pretrained(str(tmp_path / "text_encoder"))
  encoder = encode.PromptEncoder.load(str(tmp_path), vocabulary=helpers.vocabulary()[1], batch_size=4)
  prompts = ["a street, in hazy conditions", "", "a street, in hazy conditions", "two dogs, in snowy conditions"]
  out = encoder(prompts)
  assert out.shape == (4, 77, 32) and out.dtype == np.float32
  assert len(encoder.cache) == 3
  np.testing.assert_array_equal(out[0], out[2])
  want = helpers.torch_hidden(torch_model, encoder.tokenizer(prompts))
  np.testing.assert_allclose(out, want, atol=1e-5)
  np.testing.assert_array_equal(encoder.null, out[1])
  encoder(["a", "b", "c", "d", "e"])  # two batches of 4: no new compilation
  assert encoder._apply._cache_size() == 1 and len(encoder.cache) == 8
