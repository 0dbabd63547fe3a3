"""CLIP's byte-level BPE tokenizer, as Stable Diffusion 1.x's FrozenCLIPEmbedder calls it.

Text is cleaned as CLIP's tokenizer cleans it (ftfy.fix_text, runs of whitespace → one space,
stripped, lower-cased), split by CLIP's regular expression, each piece's UTF-8 bytes mapped to
printable characters and merged by the BPE ranks (the last symbol of a word carries '</w>').
`__call__` gives SD's 77 ids per text: <|startoftext|>, at most 75 text tokens, <|endoftext|>,
padded with the pad id (SD-1.x's tokenizer, openai/clip-vit-large-patch14, pads with
<|endoftext|> = 49407; the attention mask is not used, the causal mask hides the padding).

The vocabulary is read from what the user has, never downloaded: a diffusers folder's
`tokenizer/vocab.json` + `merges.txt`, or CLIP's `bpe_simple_vocab_16e6.txt.gz` (shipped by the
OpenAI `clip` and `open_clip` packages; `find_vocabulary` looks inside those when installed,
without importing them).
"""
import functools
import gzip
import importlib.util
import json
import os
import re

import ftfy
import numpy as np
import regex

from jaxdeg.errors import UserError

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
VOCAB_FILES = ("vocab.json", "merges.txt")
BPE_GZ = "bpe_simple_vocab_16e6.txt.gz"
# the number of merges CLIP's vocabulary uses from the .gz file (49408 = 2·256 bytes + merges + 2 specials)
GZ_MERGES = 49152 - 256 - 2
PACKAGES_WITH_BPE = ("open_clip", "clip")
# CLIP's split: special tokens, English contractions, letter runs, single digits, other symbol runs
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")  # the stdlib's \s, as transformers' CLIPTokenizer


class VocabularyNotFoundError(UserError):
  """No CLIP BPE vocabulary where the user pointed (or in the installed packages)."""


@functools.lru_cache(maxsize=None)
def bytes_to_unicode():
  """GPT-2/CLIP's reversible map of the 256 byte values to printable unicode characters: printable
  Latin-1 bytes map to themselves, the others to chr(256), chr(257), ... in byte order. The dict's
  order (printable bytes first, then the others) is the order of the first 256 vocabulary ids."""
  keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  table = {b: chr(b) for b in keep}
  for b in range(256):
    if b not in table:
      table[b] = chr(256 + len(table) - len(keep))
  return table


def clean(text):
  """CLIP's text cleaning (as transformers' CLIPTokenizer with ftfy installed)."""
  return _WHITESPACE.sub(" ", ftfy.fix_text(text)).strip().lower()


def _package_bpe_files():
  files = []
  for name in PACKAGES_WITH_BPE:
    try:
      spec = importlib.util.find_spec(name)  # locates the package without running it
    except (ImportError, ValueError):
      spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
      files.append(os.path.join(folder, BPE_GZ))
  return files


def find_vocabulary(path=None):
  """('json', vocab.json, merges.txt) or ('gz', bpe_simple_vocab_16e6.txt.gz) from `path`: a .gz
  file, vocab.json or merges.txt itself, a folder holding them, or a diffusers pipeline folder with
  tokenizer/. Without `path`: the .gz file the open_clip or clip package ships, when installed."""
  if path is None:
    candidates = _package_bpe_files()
    for f in candidates:
      if os.path.isfile(f):
        return ("gz", f)
    raise VocabularyNotFoundError(
        f"no CLIP BPE vocabulary found: no path given and no installed package ships {BPE_GZ} "
        f"(looked in {', '.join(PACKAGES_WITH_BPE)}); point at a diffusers folder's tokenizer/ (vocab.json + "
        f"merges.txt) or at {BPE_GZ}")
  path = os.fspath(path)
  if os.path.isfile(path):
    if path.endswith(".gz"):
      return ("gz", path)
    if os.path.basename(path) in VOCAB_FILES:
      path = os.path.dirname(path) or "."
    else:
      raise VocabularyNotFoundError(f"{path}: not a CLIP vocabulary (expected {BPE_GZ}, vocab.json or merges.txt)")
  if not os.path.isdir(path):
    raise VocabularyNotFoundError(f"{path}: no such file or folder (looked for a CLIP BPE vocabulary)")
  for folder in (path, os.path.join(path, "tokenizer")):
    vocab, merges = (os.path.join(folder, n) for n in VOCAB_FILES)
    if os.path.isfile(vocab) and os.path.isfile(merges):
      return ("json", vocab, merges)
    if os.path.isfile(os.path.join(folder, BPE_GZ)):
      return ("gz", os.path.join(folder, BPE_GZ))
  raise VocabularyNotFoundError(f"{path}: no CLIP BPE vocabulary found (looked for vocab.json + merges.txt and "
                                f"{BPE_GZ} in {path} and {os.path.join(path, 'tokenizer')})")


def _merge_pairs(lines):
  pairs = []
  for line in lines:
    parts = line.split()
    if len(parts) == 2:
      pairs.append(tuple(parts))
  return pairs


class CLIPTokenizer:
  """texts → (N, max_length) int32 ids (see the module doc). `encoder`: token → id; `merges`:
  BPE merge pairs, highest priority first."""

  def __init__(self, encoder, merges, max_length=MAX_LENGTH, pad_token=EOT):
    missing = [t for t in (SOT, EOT, pad_token) if t not in encoder]
    if missing:
      raise VocabularyNotFoundError(f"CLIP vocabulary: special token(s) {missing} missing")
    self.encoder = dict(encoder)
    self.ranks = {pair: i for i, pair in enumerate(merges)}
    self.max_length = int(max_length)
    self.sot_id, self.eot_id, self.pad_id = self.encoder[SOT], self.encoder[EOT], self.encoder[pad_token]
    self.byte_map = bytes_to_unicode()
    self._cache = {SOT: [SOT], EOT: [EOT]}

  @classmethod
  def from_path(cls, path=None, **kwargs):
    """From whatever `find_vocabulary` finds at `path`."""
    found = find_vocabulary(path)
    try:
      if found[0] == "gz":
        return cls.from_bpe_gz(found[1], **kwargs)
      return cls.from_files(found[1], found[2], **kwargs)
    except (OSError, ValueError, UnicodeDecodeError) as e:  # json errors are ValueErrors
      raise VocabularyNotFoundError(f"{' + '.join(found[1:])}: cannot read as a CLIP vocabulary: {e}") from None

  @classmethod
  def from_files(cls, vocab_json, merges_txt, **kwargs):
    """From transformers' layout: vocab.json (token → id) and merges.txt ('#version' line, then pairs)."""
    with open(vocab_json, encoding="utf-8") as f:
      encoder = json.load(f)
    with open(merges_txt, encoding="utf-8") as f:
      lines = f.read().split("\n")
    if lines and lines[0].startswith("#version"):
      lines = lines[1:]
    return cls(encoder, _merge_pairs(lines), **kwargs)

  @classmethod
  def from_bpe_gz(cls, path, **kwargs):
    """From CLIP's bpe_simple_vocab_16e6.txt.gz: ids are the 256 byte symbols, the same with
    '</w>', the merged symbols in merge order, then <|startoftext|> and <|endoftext|>."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
      lines = f.read().split("\n")
    merges = _merge_pairs(lines[1:GZ_MERGES + 1])
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
    return cls({t: i for i, t in enumerate(vocab)}, merges, **kwargs)

  @property
  def vocab_size(self):
    return len(self.encoder)

  def bpe(self, piece):
    """The BPE symbols of one regex piece (already byte-mapped)."""
    if piece in self._cache:
      return self._cache[piece]
    word = list(piece[:-1]) + [piece[-1] + "</w>"]
    while len(word) > 1:
      pairs = {(a, b) for a, b in zip(word, word[1:])}
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(word):
        if i < len(word) - 1 and (word[i], word[i + 1]) == best:
          merged.append(word[i] + word[i + 1])
          i += 2
        else:
          merged.append(word[i])
          i += 1
      word = merged
    self._cache[piece] = word
    return word

  def encode(self, text):
    """Token ids of `text`, without start/end tokens or truncation."""
    ids = []
    for piece in _PATTERN.findall(clean(text)):
      mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
      ids.extend(self.encoder[s] for s in self.bpe(mapped))
    return ids

  def __call__(self, texts):
    """(N, max_length) int32: start, text tokens (truncated to max_length − 2), end, padding."""
    if isinstance(texts, str):
      texts = [texts]
    out = np.full((len(texts), self.max_length), self.pad_id, np.int32)
    for i, t in enumerate(texts):
      ids = [self.sot_id] + self.encode(t)[:self.max_length - 2] + [self.eot_id]
      out[i, :len(ids)] = ids
    return out
