"""Prompts → CLIP text embeddings (SD's FrozenCLIPEmbedder: 77 ids, last hidden state), jitted,
with every distinct prompt encoded once and kept.

    encoder = PromptEncoder.load("/models/sd-v1-5")     # text_encoder/ + tokenizer/ of a diffusers folder
    emb = encoder(["a street, in hazy conditions", ""])  # (2, 77, 768) float32 numpy
    null = encoder.null                                   # CLIP(""), GenDeg's null text
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.interop import clip_text, compvis
from jaxdeg.text.tokenizer import MAX_LENGTH, CLIPTokenizer, VocabularyNotFoundError

COMPVIS_PREFIX = compvis.TEXT_PREFIX
# where a text encoder's tensors start: in an SD-1.x file, in transformers 4 and 5 state dicts (only
# those are read from a single file: an SD-1.x file's UNet and VAE are not kept)
_TEXT_KEYS = (COMPVIS_PREFIX, "text_model.", "embeddings.", "encoder.", "final_layer_norm.")


def load_text_encoder(path, allow_unsafe_pickle=False, flag="allow_unsafe_pickle=True", **overrides):
  """(CLIPTextTransformer, params) from a diffusers pipeline folder (text_encoder/), a transformers
  CLIPTextModel folder, or a single file: an SD-1.x checkpoint holding cond_stage_model.transformer.*
  keys or a CLIPTextModel state dict (.safetensors; a pickled .ckpt only with `allow_unsafe_pickle`,
  which runs code from the file; `flag` names that opt-in in the error). `overrides` set fields."""
  from jaxdeg.models.text import CLIPTextTransformer
  if os.path.isdir(path):
    model, variables = clip_text.import_text_encoder(path, **overrides)
    return model, variables["params"]
  state_dict = compvis.read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle, flag=flag, prefixes=_TEXT_KEYS)
  if any(k.startswith(COMPVIS_PREFIX) for k in state_dict):
    state_dict = {k[len(COMPVIS_PREFIX):]: v for k, v in state_dict.items() if k.startswith(COMPVIS_PREFIX)}
  model = CLIPTextTransformer(**{**clip_text.kwargs_from_state_dict(state_dict), **overrides})
  return model, clip_text.text_encoder_params(state_dict, model)


def load_tokenizer(weights=None, vocabulary=None, **kwargs):
  """The CLIP tokenizer of the vocabulary at `vocabulary`; else the one next to `weights` (a
  diffusers folder's tokenizer/); else the one an installed package ships."""
  if vocabulary is not None:
    return CLIPTokenizer.from_path(vocabulary, **kwargs)
  if weights is not None and os.path.isdir(weights):
    try:
      return CLIPTokenizer.from_path(weights, **kwargs)
    except VocabularyNotFoundError:
      pass
  try:
    return CLIPTokenizer.from_path(None, **kwargs)
  except VocabularyNotFoundError:
    raise VocabularyNotFoundError(
        f"no CLIP BPE vocabulary found: none next to {weights} (tokenizer/vocab.json + merges.txt) and no "
        f"installed package ships one (open_clip, clip); give the vocabulary's path") from None


class PromptEncoder:
  """Callable: prompts (list of str) → (N, max_length, width) float32 numpy. Prompts not seen
  before are tokenized and encoded in fixed-size batches (one compilation), then cached."""

  def __init__(self, model, params, tokenizer, batch_size=8):
    if tokenizer.max_length > model.max_positions:
      raise ValueError(f"PromptEncoder: the tokenizer makes {tokenizer.max_length} ids, the text encoder has "
                       f"{model.max_positions} positions")
    self.model, self.params, self.tokenizer = model, params, tokenizer
    self.batch_size = int(batch_size)
    self._apply = jax.jit(lambda p, ids: model.apply({"params": p}, ids).astype(jnp.float32))
    self.cache = {}

  @classmethod
  def load(cls, weights, vocabulary=None, batch_size=8, max_length=MAX_LENGTH, **overrides):
    """From `load_text_encoder(weights)` and `load_tokenizer(weights, vocabulary)`."""
    tokenizer = load_tokenizer(weights, vocabulary, max_length=max_length)
    model, params = load_text_encoder(weights, **overrides)
    return cls(model, params, tokenizer, batch_size)

  @property
  def width(self):
    return self.model.width

  def __call__(self, prompts):
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    new = list(dict.fromkeys(p for p in prompts if p not in self.cache))
    for start in range(0, len(new), self.batch_size):
      chunk = new[start:start + self.batch_size]
      ids = self.tokenizer(chunk + [chunk[-1]] * (self.batch_size - len(chunk)))
      out = np.asarray(self._apply(self.params, ids))
      self.cache.update(zip(chunk, out))
    if not prompts:
      return np.zeros((0, self.tokenizer.max_length, self.width), np.float32)
    return np.stack([self.cache[p] for p in prompts])

  @property
  def null(self):
    """CLIP(""): GenDeg's null text (L, width)."""
    return self([""])[0]
