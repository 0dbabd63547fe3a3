"""`jaxdeg restore`: a trained run applied tile by tile to a folder of images without targets."""
import os
import shutil

import jax
import numpy as np
from PIL import Image

from jaxdeg import cli
from jaxdeg.restore_cli import restorer
from jaxdeg.tasks import runs
from jaxdeg.train import trainer
from tests.utils import bomb_png, load_config


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
  bomb_png(images / "a_bomb.png")  # first in order: the folder goes on after it
  rc = cli.main(["jaxdeg", "restore", "--workdir", str(run), "--tile", "64", "--overlap", "16",
                 str(images), str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert rc == 1 and "skipped 2 unreadable file(s)" in err and "broken.jpg" in err
  assert "a_bomb.png: more pixels than the cap" in err
  assert sorted(os.listdir(tmp_path / "out")) == ["photo.png"]
  out = np.asarray(Image.open(tmp_path / "out" / "photo.png"), np.float32) / 255
  assert out.shape == (90, 130, 3)
  # tiles with enough overlap agree with the whole image in one call
  config, task, state, _ = runs.load_run(str(run))
  x = photo.astype(np.float32) / 255
  whole = np.clip(np.asarray(jax.jit(task.model.apply)({"params": state.inference_params()}, x[None])[0]), 0, 1)
  tiled, _ = restorer(str(run), tile=64, overlap=16)
  assert np.abs(tiled(x) - whole).max() < 1e-4
  assert np.abs(out - whole).max() <= 1 / 255 + 1e-6  # 8-bit output

  # bad arguments for this run: one line each, exit 2
  (tmp_path / "a_file").write_text("")
  no_config = tmp_path / "no_config"
  shutil.copytree(run, no_config)
  shutil.rmtree(no_config / "checkpoints" / "2" / "config")
  for workdir, args, expected in [
      (run, ["--step", "7", images, tmp_path / "out2"], "no checkpoint for step 7 in"),
      (run, [images, tmp_path / "a_file"], "a_file: a file, not a folder"),
      (no_config, [images, tmp_path / "out2"], "can be restored: checkpoint step 2 in"),
  ]:
    args = [str(a) for a in args]
    assert cli.main(["jaxdeg", "restore", "--workdir", str(workdir), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxdeg: error: ") and expected in err[0], err


def test_missing_input_and_wrong_run_are_clear_errors(tmp_path, capsys):
  assert cli.main(["jaxdeg", "restore", "--workdir", str(tmp_path), str(tmp_path / "nope"), str(tmp_path / "o")]) == 2
  assert "nope: no such file or folder" in capsys.readouterr().err
  os.makedirs(tmp_path / "empty")
  assert cli.main(["jaxdeg", "restore", "--workdir", str(tmp_path), str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
  assert "no images" in capsys.readouterr().err
