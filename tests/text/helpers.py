"""References for the text tests: open_clip's tokenizer module (loaded on its own: the package
imports torchvision), transformers' vocab.json/merges.txt files written from it, small torch CLIPs."""
import atexit
import functools
import importlib.util
import json
import os
import shutil
import tempfile

import numpy as np

BPE_GZ = "bpe_simple_vocab_16e6.txt.gz"
TINY_CLIP = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=77)


def open_clip_folder():
  spec = importlib.util.find_spec("open_clip")
  assert spec is not None, "open-clip-torch is a test dependency (make test installs it with pip --no-deps)"
  return spec.submodule_search_locations[0]


def open_clip_tokenizer_module():
  spec = importlib.util.spec_from_file_location("_open_clip_tokenizer", os.path.join(open_clip_folder(), "tokenizer.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@functools.lru_cache(maxsize=None)
def vocabulary():
  """(open_clip's SimpleTokenizer, a folder holding tokenizer/vocab.json + merges.txt written from
  it), made once per process (test modules share it)."""
  simple = open_clip_tokenizer_module().SimpleTokenizer(os.path.join(open_clip_folder(), BPE_GZ))
  folder = tempfile.mkdtemp(prefix="jaxdeg_clip_vocab_")
  atexit.register(shutil.rmtree, folder, ignore_errors=True)
  write_hf_vocabulary(simple, os.path.join(folder, "tokenizer"))
  return simple, folder


def write_hf_vocabulary(simple_tokenizer, folder):
  """transformers' vocab.json + merges.txt from open_clip's SimpleTokenizer (its special tokens
  renamed to the OpenAI/transformers spelling)."""
  rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
  vocab = {rename.get(k, k): v for k, v in simple_tokenizer.encoder.items()}
  merges = sorted(simple_tokenizer.bpe_ranks, key=simple_tokenizer.bpe_ranks.get)
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
  return folder


def torch_clip(seed=0, **sizes):
  """A random transformers CLIPTextModel (eval mode). Filled with uniform draws of CLIP's init scale
  (std 0.02; biases and LayerNorms off their 0/1 init, so their layout is tested too): transformers'
  own initialisation takes seconds at ViT-L/14 size."""
  import torch
  from transformers import CLIPTextConfig, CLIPTextModel
  try:
    from transformers.initialization import no_init_weights
  except ImportError:  # transformers 4
    from transformers.modeling_utils import no_init_weights
  with no_init_weights():
    model = CLIPTextModel(CLIPTextConfig(**sizes)).eval()
  rng = np.random.default_rng(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      u = (rng.random(tuple(p.shape), dtype=np.float32) * 2 - 1) * np.float32(3 ** 0.5)  # unit variance
      base = 1.0 if p.ndim == 1 and name.endswith("weight") else 0.0
      p.copy_(torch.from_numpy(base + (0.1 if p.ndim == 1 else 0.02) * u))
  return model


def numpy_state_dict(model):
  """Named as SD-1.x files and transformers 4 name them: text_model.* (transformers 5 drops the prefix)."""
  return {k if k.startswith("text_model.") else "text_model." + k: v.detach().numpy()
          for k, v in model.state_dict().items()}


def torch_hidden(model, ids):
  import torch
  with torch.no_grad():  # input ids only, as SD's FrozenCLIPEmbedder calls it
    return model(input_ids=torch.from_numpy(np.asarray(ids, np.int64))).last_hidden_state.numpy()
