"""Metrics: TensorBoard events with clu; a plain writer (log + PNG) when TensorFlow is absent."""
import glob
import subprocess
import sys

import numpy as np

from tests.utils import ROOT

_SCRIPT = """
import sys, numpy as np
from absl import logging
logging.set_verbosity(logging.INFO)
if {block_tf}:
  sys.modules['tensorflow'] = None  # what an accelerator image without TensorFlow looks like
from jaxdeg.train import writers
assert (writers.clu_writers() is not None) == (not {block_tf})
w = writers.create_writer(sys.argv[1])
w.write_scalars(3, {{'train/loss': 0.5}})
w.write_images(3, {{'eval/grid': np.ones((1, 8, 8, 3), np.float32) * 0.5}})
w.flush()
p = writers.create_progress(10, w, every_secs=0.0)
p(1, 0.0); p(3, 1.0)
w.close()
print('ok')
"""


def _run(workdir, block_tf):
  return subprocess.run([sys.executable, "-c", _SCRIPT.format(block_tf=block_tf), str(workdir)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_clu_writer_writes_tensorboard_events_and_png(tmp_path):
  proc = _run(tmp_path, False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
  assert glob.glob(str(tmp_path / "images" / "eval_grid_0000003.png"))


def test_no_tensorflow_import_until_a_writer_is_made():
  # the CLIs that only load runs (restore, transfer, gendeg) never pay TensorFlow's import
  code = "import sys; from jaxdeg.train import trainer; print('tensorflow' in sys.modules)"
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.stdout.strip() == "False", proc.stderr[-2000:]


def test_plain_writer_without_tensorflow(tmp_path):
  proc = _run(tmp_path, True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "train/loss=0.5" in proc.stderr
  assert "steps/s" in proc.stderr
  assert not glob.glob(str(tmp_path / "events.out.tfevents.*"))
  from PIL import Image
  png = np.asarray(Image.open(tmp_path / "images" / "eval_grid_0000003.png"))
  assert png.shape == (8, 8, 3) and abs(int(png[0, 0, 0]) - 128) <= 1
