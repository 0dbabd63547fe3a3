"""`jaxdeg restore`: a trained run applied tile by tile to a folder of images without targets."""
import os

import jax
import numpy as np
from PIL import Image

from jaxdeg import cli
from jaxdeg.restore_cli import restorer
from jaxdeg.train import runs, trainer
from tests.utils import load_config


def test_restores_a_folder_at_full_resolution_and_reports_bad_files(tmp_path, capsys):
  run = tmp_path / "run"
  trainer.train_and_evaluate(load_config("configs/restore_procedural.py:tiny", steps=2, train__eval_every=0,
                                         train__checkpoint_every=2), run)
  images = tmp_path / "in"
  images.mkdir()
  rng = np.random.default_rng(0)
  photo = (rng.uniform(size=(90, 130, 3)) * 255).astype(np.uint8)
  Image.fromarray(photo).save(images / "photo.png")
  (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  rc = cli.main(["jaxdeg", "restore", "--workdir", str(run), "--tile", "64", "--overlap", "16",
                 str(images), str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert rc == 1 and "skipped 1 unreadable file(s)" in err and "broken.jpg" in err
  out = np.asarray(Image.open(tmp_path / "out" / "photo.png"), np.float32) / 255
  assert out.shape == (90, 130, 3)
  # tiles with enough overlap agree with the whole image in one call
  config, task, state, _ = runs.load_run(str(run))
  x = photo.astype(np.float32) / 255
  whole = np.clip(np.asarray(jax.jit(task.model.apply)({"params": state.inference_params()}, x[None])[0]), 0, 1)
  tiled, _ = restorer(str(run), tile=64, overlap=16)
  assert np.abs(tiled(x) - whole).max() < 1e-4
  assert np.abs(out - whole).max() <= 1 / 255 + 1e-6  # 8-bit output


def test_missing_input_and_wrong_run_are_clear_errors(tmp_path, capsys):
  assert cli.main(["jaxdeg", "restore", "--workdir", str(tmp_path), str(tmp_path / "nope"), str(tmp_path / "o")]) == 2
  assert "nope: no such file or folder" in capsys.readouterr().err
  os.makedirs(tmp_path / "empty")
  assert cli.main(["jaxdeg", "restore", "--workdir", str(tmp_path), str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
  assert "no images" in capsys.readouterr().err
