"""`jaxdeg degrade`: happy path and one-line errors with exit status 2."""
import numpy as np
import pytest
from PIL import Image

from jaxdeg.degrade.cli import contact_sheet, main, parse_param
from tests.utils import bomb_png


@pytest.fixture
def photo(tmp_path):
  path = tmp_path / "in.png"
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
  return path


def test_degrades_a_file(tmp_path, capsys):
  grey = tmp_path / "grey.png"
  Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(grey)
  out = tmp_path / "out.png"
  code = main([str(grey), str(out), "--type", "gaussian_noise", "--intensity", "0.2", "--seed", "1",
               "--param", "gray=1"])
  assert code == 0
  assert "gaussian_noise at intensity 0.2" in capsys.readouterr().out
  result = np.asarray(Image.open(out)).astype(int)
  assert result.shape == (24, 32, 3) and result.std() > 3
  # Gray noise: the same offset on every channel (8-bit rounding aside).
  assert np.abs(result - result[..., :1]).max() <= 1


def error_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  return err[0]


@pytest.mark.parametrize("make_args, expected", [
    (lambda d, p: [str(d / "missing.png"), str(d / "o.png"), "--type", "haze"], "missing.png: no such file"),
    (lambda d, p: [str(d / "bad.png"), str(d / "o.png"), "--type", "haze"], "bad.png: not an image Pillow can read"),
    (lambda d, p: [str(d / "bomb.png"), str(d / "o.png"), "--type", "haze"],
     "bomb.png: more pixels than the cap (a decompression bomb?)"),
    (lambda d, p: [str(p), str(d / "o.png"), "--type", "haze", "--param", "beta=abc"],
     "parameter beta='abc' must be a number"),
    (lambda d, p: [str(p), str(d / "o.png"), "--type", "hail"], "unknown degradation 'hail'"),
    (lambda d, p: [str(p), str(d / "o.png"), "--type", "haze", "--intensity", "1.5"], "must be in [0, 1], got 1.5"),
    (lambda d, p: [str(p), str(d / "o.png"), "--type", "haze", "--param", "beta"], "expects KEY=VALUE"),
    (lambda d, p: [str(p), str(d / "o.png"), "--type", "haze", "--param", "betta=1"], "unknown parameter"),
    (lambda d, p: [str(p), str(d / "nowhere" / "o.png"), "--type", "haze"], "output folder"),
    (lambda d, p: [str(p), "--type", "haze"], "give an input and an output"),
    (lambda d, p: [str(p), str(d / "o.png"), "--intensity", "x"], "invalid float value"),
    (lambda d, p: [str(p), str(d / "o.png"), "--type", "haze", "--param", f"depth={d / 'small.png'}"],
     "depth map has shape (8, 8), expected the image's (24, 32)"),
])
def test_bad_input_prints_one_line_and_exits_2(make_args, expected, photo, tmp_path, capsys):
  (tmp_path / "bad.png").write_bytes(b"not a png at all")
  bomb_png(tmp_path / "bomb.png")
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small.png")
  assert main(make_args(tmp_path, photo)) == 2
  line = error_line(capsys)
  assert line.startswith("jaxdeg: error: ") and expected in line


def test_contact_sheet_has_a_row_per_type(tmp_path):
  path = tmp_path / "sheet.png"
  contact_sheet(str(path), size=32, names=["gaussian_blur", "exposure"])
  sheet = Image.open(path)
  assert sheet.size[1] == 18 + 2 * 32


def test_param_values():
  assert parse_param("beta=1.5") == ("beta", 1.5)
  key, value = parse_param("airlight=0.9, 0.9,1")
  assert key == "airlight" and value.tolist() == pytest.approx([0.9, 0.9, 1.0])
  assert parse_param("types=haze,snow") == ("types", ["haze", "snow"])
  assert parse_param("mode=bicubic") == ("mode", "bicubic")
