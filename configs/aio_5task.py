"""All-in-one restoration, the 5-task protocol (IDR): the 3-task set plus motion deblurring
(GoPro) and low-light enhancement (LOL); denoising at σ = 25 only, as IDR reports it.

  python -m jaxdeg.main --config=configs/aio_5task.py:/data/aio --workdir=runs/aio5 --mode=train

Data root as in configs/aio_3task.py, plus train/gopro, test/gopro (blur/ and sharp/) and
train/lol, test/lol (low/ and high/); evaluated on the full test images, tile by tile, as there.
Variants: `tiny` (five procedural types on the bundled photos).
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location("aio_3task", os.path.join(os.path.dirname(__file__), "aio_3task.py"))
aio_3task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(aio_3task)


def get_config(arg=None):
  c = aio_3task.get_config("tiny" if arg == "tiny" else arg)
  if arg == "tiny":
    c.data.sources, c.data.eval_sources = aio_3task.tiny_sources(
        ("haze", "rain", "gaussian_noise", "motion_blur", "low_light"))
    return c
  root = arg or "/data/aio"
  train, test = aio_3task.protocol_sources(root)
  keep = lambda sources: tuple(s for s in sources if s.get("sigma") in (None, 25.0))
  c.data.sources = keep(train) + (
      dict(kind="paired", path=f"{root}/train/gopro", layout="gopro", weight=2.0, label="GoPro"),
      dict(kind="paired", path=f"{root}/train/lol", layout="lol", weight=0.5, label="LOL"))
  c.data.eval_sources = keep(test) + (
      dict(kind="paired", path=f"{root}/test/gopro", layout="gopro", label="GoPro"),
      dict(kind="paired", path=f"{root}/test/lol", layout="lol", label="LOL"))
  return c
