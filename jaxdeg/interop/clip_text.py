"""Import CLIP text-encoder weights named as transformers' `CLIPTextModel` state dict
(`text_model.embeddings.token_embedding.weight`, `text_model.encoder.layers.N.self_attn.q_proj.weight`,
..., `text_model.final_layer_norm.bias`) into `jaxdeg.models.text.CLIPTextTransformer` params.

That is a diffusers pipeline's `text_encoder/` folder, and a CompVis/SD-1.x checkpoint's
`cond_stage_model.transformer.*` keys once that prefix is stripped. Keys may also come without
the `text_model.` prefix. The `position_ids` buffer is not a weight and is ignored.
"""
import jax
import jax.numpy as jnp

from jaxdeg.interop import diffusers
from jaxdeg.interop.diffusers import WeightImportError

PREFIX = "text_model."
_EMBEDDINGS = ("embeddings.token_embedding", "embeddings.position_embedding")
# CLIP's text towers all use 64-wide heads; a checkpoint without a config.json does not say
HEAD_DIM = 64


def _named(state_dict):
  """Keys with the text_model. prefix, embedding tables renamed to our leaf name, buffers dropped."""
  out = {}
  for key, value in state_dict.items():
    if key.endswith("position_ids"):
      continue
    key = key if key.startswith(PREFIX) else PREFIX + key
    for table in _EMBEDDINGS:
      if key == f"{PREFIX}{table}.weight":
        key = f"{PREFIX}{table}.embedding"  # an embedding table is not transposed
    out[key] = value
  return out


def text_encoder_kwargs(config):
  """`CLIPTextTransformer` fields from a transformers CLIPTextConfig (config.json as a dict)."""
  act = config.get("hidden_act", "quick_gelu")
  if act != "quick_gelu":
    raise WeightImportError(f"CLIP text config: hidden_act {act!r} unsupported (CLIP's text towers use quick_gelu)")
  return dict(vocab_size=config.get("vocab_size", 49408), max_positions=config.get("max_position_embeddings", 77),
              width=config.get("hidden_size", 768), num_layers=config.get("num_hidden_layers", 12),
              heads=config.get("num_attention_heads", 12), mlp_width=config.get("intermediate_size", 3072),
              eps=config.get("layer_norm_eps", 1e-5))


def kwargs_from_state_dict(state_dict):
  """`CLIPTextTransformer` fields read off the weight shapes (heads = width / 64, as every CLIP)."""
  sd = _named(state_dict)
  try:
    vocab, width = sd[f"{PREFIX}embeddings.token_embedding.embedding"].shape
    positions = sd[f"{PREFIX}embeddings.position_embedding.embedding"].shape[0]
    mlp = sd[f"{PREFIX}encoder.layers.0.mlp.fc1.weight"].shape[0]
  except KeyError as e:
    raise WeightImportError(f"CLIP text encoder weights: key {e.args[0]!r} missing (not a CLIP text model?)") from None
  layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(f"{PREFIX}encoder.layers."))
  return dict(vocab_size=int(vocab), max_positions=int(positions), width=int(width), num_layers=layers,
              heads=max(1, int(width) // HEAD_DIM), mlp_width=int(mlp))


def param_shapes(model):
  """Abstract params of a `CLIPTextTransformer` (no arrays allocated)."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, model.max_positions), jnp.int32)))


def text_encoder_params(state_dict, model=None):
  """Flat {HF name: array} → `CLIPTextTransformer` params (a nested dict of float32 arrays).

  `model` gives the sizes (default: ViT-L/14's, SD-1.x's text encoder). Raises
  WeightImportError naming missing keys, unexpected keys and shape mismatches."""
  from jaxdeg.models.text import CLIPTextTransformer
  model = model or CLIPTextTransformer()
  target = {"text_model": param_shapes(model)["params"]}
  try:
    return diffusers.convert(_named(state_dict), target, what="CLIP text encoder", expand_input=())["text_model"]
  except WeightImportError as e:
    raise WeightImportError(str(e).replace("_embedding.embedding", "_embedding.weight")) from None


def import_text_encoder(path, subfolder="text_encoder", **overrides):
  """(CLIPTextTransformer, {'params': ...}) from a diffusers pipeline folder (text_encoder/), a
  transformers CLIPTextModel folder, or a weight file. Sizes come from config.json, else from the
  weight shapes; `overrides` set fields (e.g. dtype)."""
  from jaxdeg.models.text import CLIPTextTransformer
  state_dict = diffusers.load_state_dict(path, subfolder)
  config = diffusers.load_config(path, subfolder)
  kwargs = text_encoder_kwargs(config) if config else kwargs_from_state_dict(state_dict)
  model = CLIPTextTransformer(**{**kwargs, **overrides})
  return model, {"params": text_encoder_params(state_dict, model)}
