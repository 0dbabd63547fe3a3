"""Decoding every supported file kind, folder listing, and the pairing layouts."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from jaxdeg.data import images, layouts, sources, transforms
from jaxdeg.errors import DataError
from tests.data.conftest import flat, gradient, ident, write


def test_decode_modes_and_bit_depths(tmp_path):
  rgb = gradient(12, 20)
  write(tmp_path / "rgb.png", rgb)
  write(tmp_path / "rgb.webp", rgb, lossless=True)
  write(tmp_path / "grey.jpg", Image.fromarray(rgb[..., 0]), quality=100)
  write(tmp_path / "rgba.png", np.dstack([rgb, np.full((12, 20), 255, np.uint8)]))
  write(tmp_path / "palette.png", Image.fromarray(rgb).convert("P"))
  sixteen = (np.arange(12 * 20, dtype=np.uint16) * 257).reshape(12, 20)
  write(tmp_path / "grey16.png", Image.fromarray(sixteen))
  write(tmp_path / "grey16.tif", Image.fromarray(sixteen))
  for name in ("rgb.png", "rgb.webp", "rgba.png"):
    np.testing.assert_array_equal(images.decode_image(str(tmp_path / name)), rgb, err_msg=name)
  assert images.decode_image(str(tmp_path / "grey.jpg")).shape == (12, 20, 3)
  assert images.decode_image(str(tmp_path / "palette.png")).dtype == np.uint8
  for name in ("grey16.png", "grey16.tif"):
    out = images.decode_image(str(tmp_path / name))
    assert out.dtype == np.uint16, name
    np.testing.assert_array_equal(out[..., 1], sixteen)
  np.testing.assert_allclose(images.to_float(out)[..., 0], sixteen / 65535.0, rtol=1e-6)
  # bytes decode the same as the path
  data = (tmp_path / "rgb.png").read_bytes()
  np.testing.assert_array_equal(images.decode_image(data), rgb)


def test_exif_orientation_is_applied(tmp_path):
  img = Image.fromarray(gradient(10, 30))
  exif = img.getexif()
  exif[0x0112] = 6  # rotate 90° clockwise on display
  path = write(tmp_path / "rotated.jpg", img, exif=exif.tobytes(), quality=95)
  assert images.decode_image(path).shape == (30, 10, 3)
  assert images.probe_image(path) == (30, 10)


def test_folder_source_is_recursive_and_sorted(tmp_path):
  for i, rel in enumerate(["b.png", "a/c.jpg", "a/deeper/d.webp", "e.TIF"]):
    write(tmp_path / rel, flat(i))
  src = sources.FolderSource(tmp_path)
  assert [os.path.relpath(p, tmp_path) for p in src.paths] == ["a/c.jpg", "a/deeper/d.webp", "b.png", "e.TIF"]
  assert src[0]["clean"].endswith("a/c.jpg")


def _pairs_of(src):
  return sorted((os.path.relpath(d, src.root), os.path.relpath(c, src.root), m) for d, c, m in src.pairs)


def test_relative_and_custom_pattern_layouts(tmp_path):
  write(tmp_path / "rel/degraded/x/1.jpg", flat(1))
  write(tmp_path / "rel/clean/x/1.png", flat(2))
  assert _pairs_of(sources.PairedFolderSource(tmp_path / "rel")) == [("degraded/x/1.jpg", "clean/x/1.png", {})]
  write(tmp_path / "pat/input/img_7_s0.5.png", flat(1))
  write(tmp_path / "pat/target/7.png", flat(2))
  src = sources.PairedFolderSource(tmp_path / "pat", degraded_dirs="input", clean_dirs=("target",),
                                   pattern=r"img_(?P<id>\d+)_s(?P<strength>[0-9.]+)", template="{id}",
                                   type_name="snow")
  assert _pairs_of(src) == [("input/img_7_s0.5.png", "target/7.png", {"id": 7.0, "strength": 0.5})]
  assert src[0]["type"] == "snow" and src[0]["meta"]["strength"] == 0.5


def make_benchmark(root, layout):
  """A tiny folder in each benchmark's layout; returns the number of pairs in it."""
  root = str(root)
  if layout == "sots":
    for i, (a, b) in enumerate([("0.8", "0.2"), ("0.9", "0.16")]):
      write(f"{root}/hazy/0001_{a}_{b}.jpg", flat(1 + i), quality=95)
    write(f"{root}/clear/0001.png", flat(5))
    write(f"{root}/hazy/0002_1_0.1.jpg", flat(3))
    write(f"{root}/clear/0002.png", flat(6))
    return 3
  if layout == "rain100l":
    for i in (1, 2):
      write(f"{root}/rain/rain-{i:03d}.png", flat(i))
      write(f"{root}/norain/norain-{i:03d}.png", flat(10 + i))
    return 2
  if layout == "lol":
    for i in (1, 2):
      write(f"{root}/low/{i}.png", flat(i))
      write(f"{root}/high/{i}.png", flat(10 + i))
    return 2
  if layout == "gopro":
    for scene in ("GOPR0372_07_00", "GOPR0384_11_01"):
      for i in (1, 2):
        write(f"{root}/{scene}/blur/{i:06d}.png", flat(i))
        write(f"{root}/{scene}/sharp/{i:06d}.png", flat(10 + i))
    return 4
  if layout == "bsd68":
    for i in (1, 2, 3):
      write(f"{root}/test{i:03d}.png", flat(10 + i))
    return 3
  raise ValueError(layout)


@pytest.mark.parametrize("layout", ["sots", "rain100l", "lol", "gopro", "bsd68"])
def test_benchmark_layouts_pair_up(tmp_path, layout):
  n = make_benchmark(tmp_path, layout)
  src = sources.PairedFolderSource(tmp_path, layout)
  assert len(src) == n
  decode = transforms.Decode("raise", str(tmp_path))
  for i in range(n):
    rec = decode.map(src[i])
    assert rec["type"] == layouts.PRESETS[layout].type_name
    assert rec["clean"].shape == rec["degraded"].shape == (16, 16, 3)
    if layout == "bsd68":
      noise = rec["degraded"] - images.to_float(rec["clean"])
      assert 0.07 < noise.std() < 0.13  # sigma 25/255
      np.testing.assert_array_equal(decode.map(src[i])["degraded"], rec["degraded"])  # fixed per image
    elif layout != "sots":
      assert ident(rec["clean"]) == ident(rec["degraded"]) + 10
  if layout == "sots":
    metas = sorted((p[2]["A"], p[2]["beta"]) for p in src.pairs)
    assert metas == [(0.8, 0.2), (0.9, 0.16), (1.0, 0.1)]
    assert sorted(os.path.basename(c) for _, c, _ in src.pairs) == ["0001.png", "0001.png", "0002.png"]


def test_missing_folder_and_empty_folder_name_the_folder(tmp_path):
  with pytest.raises(DataError, match="no such folder"):
    sources.FolderSource(tmp_path / "nope")
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match=f"{tmp_path / 'empty'}.*no image files"):
    sources.FolderSource(tmp_path / "empty")


def test_bytes_sources_decode_like_files(tmp_path):
  buf = io.BytesIO()
  Image.fromarray(flat(3)).save(buf, format="PNG")
  rec = transforms.Decode("raise", str(tmp_path)).map({"clean": buf.getvalue(), "name": "mem"})
  assert ident(rec["clean"]) == 3


def test_to_float_matches_torch_division():
  # torchvision's ToTensor: float32 cast, then division by 255 (65535 for 16-bit): the pipeline's
  # images must hold the same float32 values, from contiguous crops and from flipped views.
  torch = pytest.importorskip("torch")
  eight = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)
  sixteen = np.arange(65536, dtype=np.uint16).reshape(256, 256)
  for arr, scale in ((eight, 255), (eight[2:14, ::-1], 255), (sixteen, 65535), (sixteen[::-1, 3:], 65535)):
    want = torch.from_numpy(np.ascontiguousarray(arr).astype(np.int32)).float().div(scale).numpy()
    got = images.to_float(arr)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
