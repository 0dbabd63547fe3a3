"""CLIP BPE tokenizer: identical ids to open_clip's SimpleTokenizer and transformers' CLIPTokenizer
on the same vocabulary (open_clip's bpe_simple_vocab_16e6.txt.gz, and vocab.json/merges.txt written
from it), on official GenDeg prompts, captions with punctuation, unicode and texts over 77 tokens.

What the references differ in, and how the comparison handles it:
- open_clip unescapes HTML entities twice after ftfy.fix_text (which unescapes them once, unless
  the text holds a '<'); transformers' CLIPTokenizer (what SD-1.x and GenDeg call) and jaxdeg only
  run ftfy: strings that html.unescape changes are compared with transformers only.
- transformers 5's CLIPTokenizer normalises with NFC and a per-character lowercase where its Python
  tokenizer (GenDeg's transformers 4.19) ran ftfy.fix_text and str.lower (final sigma: 'ς'): it is
  given ftfy.fix_text(text).lower().
- open_clip pads with 0, SD-1.x's tokenizer with <|endoftext|>: rows are compared up to and
  including the end token, and the padding separately.
"""
import html
import os
import random

import ftfy
import numpy as np
import pytest

from jaxdeg.models.ldm.conditioning import PROMPT_SUFFIXES, gendeg_prompt
from jaxdeg.text import tokenizer as tok
from tests.text import helpers

WORDS = ("a", "man", "riding", "bike", "down", "the", "street", "city", "skyline", "at", "night", "two", "dogs",
         "playing", "in", "park", "with", "trees", "building", "cars", "parked", "road", "mountain", "lake",
         "sunset", "people", "walking", "sidewalk", "red", "truck", "on", "highway", "close-up", "of", "flower",
         "it's", "don't", "they'll", "we've", "I'm", "you'd", "she's", "DSLR", "HDR", "4K", "x2", "B&W")
UNICODE = ("café", "naïve", "Zürich", "São Paulo", "crème brûlée", "東京の夜景", "北京", "서울 거리",
           "Москва", "Αθήνα", "القاهرة", "नमस्ते", "🚲", "🌧️", "☔", "❄", "😀👍", "ﬁeld", "Ｆｕｌｌｗｉｄｔｈ",
           "“quoted”", "‘single’", "—dash—", "…", "½ cup", "²", "Ⅻ", "ß", "İstanbul", "Σίσυφος",
           "\u00a0nbsp", "e\u0301", "Ã©", "a\u200bb", "tab\there", "new\nline", "  spaced   out  ")
PUNCT = (",", ".", "!", "?", ";", ":", "...", "!!", "?!", " - ", "(", ")", "[", "]", '"', "'", "#", "$", "%", "&",
         "*", "+", "=", "/", "\\", "@", "^", "_", "~", "`", "|", "<", ">", "{", "}")
CAPTIONS = ("a man riding a bike down a street", "a city street with cars parked on the side",
            "two dogs playing in the snow", "a view of a mountain range from a lake", "a close up of a flower")


def corpus(n=1200, seed=0):
  rng = random.Random(seed)
  texts = [gendeg_prompt(t, c) for t in PROMPT_SUFFIXES for c in CAPTIONS + ("",)]
  texts += ["", " ", "<|endoftext|>", "a <|startoftext|> b", "&amp; &lt;b&gt; AT&T", "it&#39;s", "x" * 300]
  while len(texts) < n:
    kind = rng.random()
    parts = []
    for _ in range(rng.randint(1, 70 if kind < 0.25 else 14)):
      r = rng.random()
      parts.append(rng.choice(WORDS) if r < 0.6 else rng.choice(UNICODE) if r < 0.75 else
                   rng.choice(PUNCT) if r < 0.9 else str(rng.randint(0, 10 ** rng.randint(1, 6))))
    sep = rng.choice((" ", " ", " ", "", ", "))
    text = sep.join(parts)
    if rng.random() < 0.3:
      text = gendeg_prompt(rng.choice(tuple(PROMPT_SUFFIXES)), text)
    if rng.random() < 0.2:
      text = text.upper()
    texts.append(text)
  return texts


@pytest.fixture(scope="module")
def references():
  simple, folder = helpers.vocabulary()
  return simple, os.path.join(helpers.open_clip_folder(), helpers.BPE_GZ), os.path.join(folder, "tokenizer")


def _open_clip_ids(simple, texts):
  ids = simple(texts).numpy().astype(np.int32)
  for row in ids:  # open_clip pads with 0 after the end token; SD-1.x with the end token
    end = int(np.argmax(row == simple.eot_token_id))
    row[end + 1:] = simple.eot_token_id
  return ids


def test_ids_match_open_clip_and_transformers(references):
  from transformers import CLIPTokenizer as HFTokenizer
  simple, gz, folder = references
  texts = corpus()
  ours_gz = tok.CLIPTokenizer.from_path(gz)
  ours = tok.CLIPTokenizer.from_path(os.path.dirname(folder))  # a diffusers pipeline folder: finds tokenizer/
  assert ours.vocab_size == ours_gz.vocab_size == 49408 and ours.pad_id == ours.eot_id == 49407
  ids = ours(texts)
  np.testing.assert_array_equal(ours_gz(texts[::10]), ids[::10])
  assert ids.shape == (len(texts), 77) and (ids[:, 0] == 49406).all()

  hf = HFTokenizer.from_pretrained(folder)
  hf_ids = np.asarray(hf([ftfy.fix_text(t).lower() for t in texts], truncation=True, max_length=77, padding="max_length")
                      ["input_ids"], np.int32)
  same_hf = [i for i in range(len(texts)) if (hf_ids[i] == ids[i]).all()]
  plain = [i for i, t in enumerate(texts) if html.unescape(t) == t and "<|" not in t]
  oc_ids = _open_clip_ids(simple, [texts[i] for i in plain])
  same_oc = [i for k, i in enumerate(plain) if (oc_ids[k] == ids[i]).all()]
  long = sum(len(ours.encode(t)) > 75 for t in texts)
  print(f"{len(texts)} texts ({long} over 77 tokens): transformers identical on {len(same_hf)}, "
        f"open_clip identical on {len(same_oc)} of {len(plain)}")
  assert len(same_hf) == len(texts), [texts[i] for i in sorted(set(range(len(texts))) - set(same_hf))][:5]
  assert len(same_oc) == len(plain) >= 1000, [texts[i] for i in sorted(set(plain) - set(same_oc))][:5]
  assert long >= 100


def test_truncation_keeps_the_end_token_and_pads_with_it(references):
  ours = tok.CLIPTokenizer.from_path(references[1])
  long, short = ours(["snow " * 100, "a photo"])
  assert long[0] == 49406 and long[-1] == 49407 and (long[1:-1] != 49407).all()
  assert short.tolist()[:4] == [49406, ours.encoder["a</w>"], ours.encoder["photo</w>"], 49407]
  assert (short[4:] == 49407).all()


def test_vocabulary_not_found_is_one_line(tmp_path):
  (tmp_path / "empty").mkdir()
  (tmp_path / "weights.bin").write_bytes(b"\0")
  for path, words in ((tmp_path / "empty", ("vocab.json", "merges.txt", helpers.BPE_GZ, "tokenizer")),
                      (tmp_path / "missing", ("no such file or folder",)),
                      (tmp_path / "weights.bin", ("not a CLIP vocabulary",))):
    with pytest.raises(tok.VocabularyNotFoundError) as e:
      tok.CLIPTokenizer.from_path(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message and all(w in message for w in words), message
  (tmp_path / "tokenizer").mkdir()
  (tmp_path / "tokenizer" / "vocab.json").write_text("{not json")
  (tmp_path / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
  with pytest.raises(tok.VocabularyNotFoundError, match=r"vocab\.json.*cannot read as a CLIP vocabulary"):
    tok.CLIPTokenizer.from_path(tmp_path)
  assert issubclass(tok.VocabularyNotFoundError, __import__("jaxdeg.errors").errors.UserError)


def test_installed_package_vocabulary_is_found_without_importing_it():
  import sys
  kind, path = tok.find_vocabulary()
  assert kind == "gz" and path.endswith(helpers.BPE_GZ) and os.path.isfile(path)
  assert "open_clip" not in sys.modules  # located, not imported (it would import torchvision)
