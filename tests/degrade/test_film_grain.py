"""AV1 film grain: bit-exactness and grain statistics against dav1d, grain tables, the degradation contract.

The dav1d tests encode a photo losslessly with aomenc and a grain table, then decode it with
`dav1d --filmgrain 0` and `--filmgrain 1`: the two outputs are an exactly aligned clean/grainy pair.
They need the Debian packages aom-tools and dav1d (`make test` installs them: tests/install_system_tools.sh).
"""
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data

from jaxdeg import degrade
from jaxdeg.degrade import film_grain as fg
from jaxdeg.degrade.film_grain_params import (FilmGrainParams, GrainTableSegment, as_params,
                                              format_grain_table, parse_grain_table, preset,
                                              read_grain_table, scaling_lut, write_grain_table)
from jaxdeg.degrade.jpeg import rgb_to_ycbcr, ycbcr_to_rgb
from jaxdeg.errors import ConfigError, DataError
from jaxdeg.metrics.image_quality import psnr


def _photo(h=64, w=96):
  return jnp.asarray(data.astronaut()[40:40 + h, 180:180 + w] / 255.0, jnp.float32)


# ---- random generator and scaling function -------------------------------------------------

def _lfsr_reference(seed, n, bits):
  """get_random_number() of the AV1 spec, one call at a time."""
  out = []
  for _ in range(n):
    bit = (seed ^ (seed >> 1) ^ (seed >> 3) ^ (seed >> 12)) & 1
    seed = (seed >> 1) | (bit << 15)
    out.append((seed >> (16 - bits)) & ((1 << bits) - 1))
  return out


@pytest.mark.parametrize("seed", [1, 7391, 45231, 0xFFFF])
def test_vectorised_lfsr_matches_spec(seed):
  for bits in (8, 11):
    got = np.asarray(fg._random_numbers(seed, 300, bits))
    np.testing.assert_array_equal(got, _lfsr_reference(seed, 300, bits))


def test_scaling_function_passes_through_points():
  p = preset(1)
  lut = scaling_lut(p.scaling_points_y)
  for x, y in p.scaling_points_y:
    assert lut[x] == y
  assert (lut[:16] == 0).all() and (lut[178:] == 184).all()
  np.testing.assert_array_equal(scaling_lut(((0, 0), (255, 255))), np.arange(256))
  assert not scaling_lut(()).any()


# ---- parameter sets and filmgrn1 tables ----------------------------------------------------

def test_presets_are_valid_and_distinct():
  sets = [preset(n) for n in range(1, 17)]
  assert len(set(sets)) == 16
  assert sets[0].scaling_points_y[-1] == (178, 184) and sets[0].ar_coeff_lag == 2
  with pytest.raises(ConfigError, match="preset"):
    preset(17)


def test_table_round_trip(tmp_path):
  # The table format has no clip_to_restricted_range field, so it reads back as 0.
  segs = [GrainTableSegment(i * 400000, (i + 1) * 400000, preset(i + 1).replace(clip_to_restricted_range=0))
          for i in range(16)]
  segs.append(GrainTableSegment(16 * 400000, 10**10, segs[-1].params.replace(random_seed=99),
                                update_parameters=False))
  path = tmp_path / "grain.tbl"
  write_grain_table(path, segs)
  assert read_grain_table(path) == segs
  text = path.read_text()
  assert text.startswith("filmgrn1\nE 0 400000 1 45231 1\n\tp 2 8 0 11 0 0 247 192 18 229 192 54\n")
  assert "\n\tsY 14  16 0 25 136" in text  # libaom's own spacing
  assert format_grain_table(read_grain_table(path)) == text
  assert as_params(str(path)) == segs[0].params  # a table path works as the `params` override


def test_table_errors_name_the_file_and_line(tmp_path):
  bad = tmp_path / "bad.tbl"
  bad.write_text("filmgrain\n")
  with pytest.raises(DataError, match="bad.tbl.*filmgrn1"):
    read_grain_table(bad)
  text = format_grain_table([GrainTableSegment(0, 10, preset(2))]).replace("\tsCb 2 0 64 255 64", "\tsCb 2 0 64")
  with pytest.raises(DataError, match=r"<grain table>:5: 'sCb'"):
    parse_grain_table(text)
  with pytest.raises(DataError, match="cannot read"):
    read_grain_table(tmp_path / "missing.tbl")


def test_params_validation():
  with pytest.raises(ConfigError, match="ar_coeffs_y"):
    FilmGrainParams(ar_coeff_lag=1, ar_coeffs_y=(1, 2))
  with pytest.raises(ConfigError, match="scaling_points_y"):
    FilmGrainParams(scaling_points_y=((10, 5), (5, 7)))
  with pytest.raises(ConfigError, match="scaling_shift"):
    FilmGrainParams(scaling_shift=12)
  assert FilmGrainParams.from_dict(preset(3).to_dict()) == preset(3)


# ---- the degradation contract --------------------------------------------------------------

def _grain(key, image, intensity, **kw):
  return degrade.get("film_grain")(key, image, intensity, **kw)


def test_intensity_zero_is_identity_and_output_in_range():
  img = _photo()
  out, params = _grain(jax.random.key(0), img, 0.0)
  assert float(psnr(out, img)) >= 50.0
  out, _ = _grain(jax.random.key(0), img, 1.0)
  assert out.shape == img.shape and out.dtype == jnp.float32
  assert bool(jnp.isfinite(out).all()) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert set(params) == {"scale", "random_seed"}


def test_deterministic_per_key():
  img = _photo()
  a, pa = _grain(jax.random.key(3), img, 0.7)
  b, _ = _grain(jax.random.key(3), img, 0.7)
  c, pc = _grain(jax.random.key(4), img, 0.7)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert int(pa["random_seed"]) != int(pc["random_seed"])
  assert float(jnp.abs(a - c).mean()) > 1e-3


def test_psnr_falls_with_intensity():
  img = _photo()
  scores = [float(psnr(_grain(jax.random.key(5), img, i)[0], img)) for i in (0.25, 0.5, 1.0)]
  assert scores[0] > scores[1] > scores[2], scores


def test_jit_equals_eager_and_batches():
  img = _photo()
  eager, _ = _grain(jax.random.key(6), img, 0.8)
  jitted, _ = jax.jit(_grain)(jax.random.key(6), img, 0.8)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-6)
  batch = jnp.stack([img, img, img])
  out, params = degrade.apply(jax.random.key(7), batch, "film_grain", jnp.array([0.0, 0.5, 1.0]))
  assert out.shape == batch.shape and params["random_seed"].shape == (3,)
  assert float(psnr(out[0], img)) >= 50.0 and float(psnr(out[2], img)) < float(psnr(out[1], img))


def test_overrides():
  img = _photo()
  a, p = _grain(jax.random.key(8), img, 0.0, params=12, scale=1.0, random_seed=1234, subsampling="444")
  assert int(p["random_seed"]) == 1234 and float(p["scale"]) == 1.0
  assert float(psnr(a, img)) < 45.0
  b, _ = _grain(jax.random.key(9), img, 0.0, params=preset(12).to_dict(), scale=1.0, random_seed=1234,
                subsampling="444")
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ConfigError, match="unknown parameter"):
    _grain(jax.random.key(0), img, 0.5, strength=3)
  with pytest.raises(ConfigError, match="subsampling"):
    _grain(jax.random.key(0), img, 0.5, subsampling="422")


# ---- parity with dav1d ---------------------------------------------------------------------

def _require_tools():
  missing = [t for t in ("aomenc", "dav1d") if shutil.which(t) is None]
  if missing:
    pytest.fail(f"{' and '.join(missing)} not found: the film grain parity tests need them; `make test` "
                "installs them (tests/install_system_tools.sh .venv), or `apt-get install -y aom-tools dav1d`")


def _to_yuv(rgb_u8, sub):
  ycc = np.asarray(rgb_to_ycbcr(jnp.asarray(rgb_u8, jnp.float32)))
  h, w = rgb_u8.shape[:2]
  y = np.clip(np.round(ycc[..., 0]), 0, 255).astype(np.uint8)
  c = ycc[..., 1:]
  if sub:
    c = np.pad(c, ((0, h & 1), (0, w & 1), (0, 0)), mode="edge")
    c = c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2, 2).mean((1, 3))
  c = np.clip(np.round(c), 0, 255).astype(np.uint8)
  return y, c[..., 0], c[..., 1]


def _write_y4m(path, planes, sub):
  h, w = planes[0].shape
  with open(path, "wb") as f:
    f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 {'C420jpeg' if sub else 'C444'}\n".encode())
    f.write(b"FRAME\n" + b"".join(np.ascontiguousarray(p).tobytes() for p in planes))


def _read_y4m(path):
  """The first frame's (Y, Cb, Cr) planes of an 8-bit 4:2:0 or 4:4:4 y4m file."""
  raw = path.read_bytes()
  header, rest = raw.split(b"\n", 1)
  toks = header.split()
  w, h = int(toks[1][1:]), int(toks[2][1:])
  sub = not any(t.startswith(b"C444") for t in toks)
  ch, cw = ((h + 1) // 2, (w + 1) // 2) if sub else (h, w)
  assert rest.startswith(b"FRAME")
  buf = np.frombuffer(rest[rest.index(b"\n") + 1:], np.uint8)
  sizes = np.cumsum([0, h * w, ch * cw, ch * cw])
  shapes = [(h, w), (ch, cw), (ch, cw)]
  return tuple(buf[a:b].reshape(s) for a, b, s in zip(sizes[:-1], sizes[1:], shapes))


def _av1_pair(tmp_path, rgb_u8, params, sub=1):
  """Encode one frame losslessly with a grain table; decode without and with grain."""
  _require_tools()
  _write_y4m(tmp_path / "in.y4m", _to_yuv(rgb_u8, sub), sub)
  write_grain_table(tmp_path / "grain.tbl", [GrainTableSegment(0, 10**10, params)])
  cmd = ["aomenc", "--limit=1", "--usage=2", "--cpu-used=9", "--lossless=1",
         f"--film-grain-table={tmp_path / 'grain.tbl'}", "-o", str(tmp_path / "out.ivf"), str(tmp_path / "in.y4m")]
  if not sub:
    cmd.insert(1, "--profile=1")
  run = subprocess.run(cmd, capture_output=True, text=True)
  assert run.returncode == 0, f"aomenc failed: {run.stderr[-500:]}"
  frames = []
  for on in (0, 1):
    out = tmp_path / f"dec{on}.y4m"
    run = subprocess.run(["dav1d", "-q", "-i", str(tmp_path / "out.ivf"), "-o", str(out), "--filmgrain", str(on)],
                         capture_output=True, text=True)
    assert run.returncode == 0, f"dav1d failed: {run.stderr[-500:]}"
    frames.append(_read_y4m(out))
  return frames


@pytest.mark.parametrize("number,sub", [(1, 1), (2, 1), (15, 1), (3, 0)])
def test_bit_exact_with_dav1d(tmp_path, number, sub):
  # Odd frame size: partial blocks at the right and bottom, odd chroma sizes.
  rgb = data.astronaut()[100:237, 150:351]
  params = preset(number).replace(clip_to_restricted_range=0)
  clean, grainy = _av1_pair(tmp_path, rgb, params, sub)
  ours = fg.add_grain_yuv(*clean, params, params.random_seed)
  for name, a, b in zip("Y Cb Cr".split(), ours, grainy):
    np.testing.assert_array_equal(np.asarray(a), b, err_msg=f"preset {number} plane {name}")
  assert np.std(grainy[0].astype(int) - clean[0]) > 1.0


def _lag1(g, axis):
  g = g - g.mean()
  a, b = np.take(g, range(g.shape[axis] - 1), axis), np.take(g, range(1, g.shape[axis]), axis)
  return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize("number", [1, 2])
def test_grain_statistics_match_dav1d(tmp_path, number, record_property):
  """jaxdeg's RGB degradation with random seeds vs the decoder's grain on the same clean frame."""
  params = preset(number).replace(clip_to_restricted_range=0)
  (y0, cb0, cr0), (y1, _, _) = _av1_pair(tmp_path, data.astronaut()[::2, ::2], params)
  up = lambda c: np.repeat(np.repeat(c, 2, 0), 2, 1)
  clean = np.asarray(ycbcr_to_rgb(jnp.asarray(np.stack([y0, up(cb0), up(cr0)], -1), jnp.float32)))
  clean = jnp.asarray(np.clip(clean / 255.0, 0, 1), jnp.float32)
  out, _ = degrade.apply(jax.random.key(number), jnp.stack([clean] * 4), "film_grain", 1.0,
                         params=params, scale=1.0)
  luma = lambda x: np.asarray(rgb_to_ycbcr(x * 255.0))[..., 0]
  ours = luma(out) - luma(clean)
  ref = y1.astype(np.float64) - y0
  edges = np.arange(0, 257, 32)
  bins = np.digitize(y0, edges) - 1
  errors = []
  for b in range(len(edges) - 1):
    m = bins == b
    if m.sum() >= 1000:
      errors.append(abs(ours[:, m].std() / ref[m].std() - 1.0))
  acorr = [abs(np.mean([_lag1(g, ax) for g in ours]) - _lag1(ref, ax)) for ax in (0, 1)]
  record_property("std_vs_luma_max_rel_error", float(max(errors)))
  record_property("lag1_autocorr_max_abs_diff", float(max(acorr)))
  assert len(errors) >= 6 and max(errors) <= 0.10, errors
  assert max(acorr) <= 0.05, acorr
