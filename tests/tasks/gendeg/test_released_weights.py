"""GenDeg's released weights in jaxdeg: `jaxdeg gendeg`'s sampler against an independent PyTorch
reference, the structure corrector against a PyTorch NAFNet_Combine, and the command itself.

The sampler reference (`torch_sample`) is diffusers' UNet and VAE, loaded through diffusers' own
single-file conversion of the same small random CompVis checkpoint (EMA weights extracted), driven
by a hand-written loop following k-diffusion's `sample_euler_ancestral` with its `CompVisDenoiser`
(σ grid by log-σ interpolation at linspace(999, 0, n), σ → t by the inverse interpolation,
input × 1/√(σ²+1), denoised = x − σ·ε) and run_single.py's CFGDenoiser (the three conditionings in
one batch, ε(∅,∅) + s_T·[ε(I,T) − ε(I,∅)] + s_I·[ε(I,∅) − ε(∅,∅)]), as run_single.py calls them;
the initial noise and every step's noise are injected into both.
"""
import numpy as np
import pytest
from PIL import Image

from jaxdeg import gendeg_cli
from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.gendeg_cli import GenDeg
from jaxdeg.interop import compvis
from jaxdeg.tasks.structure import official_corrector
from tests.interop import compvis_layout as layout
from benchmarks.peers import torch_gendeg
from benchmarks.peers.torch_nafnet import NAFNet
from benchmarks.peers.torch_gendeg import nchw, nhwc
from tests.synth.official_files import write_official
from tests.text.helpers import TINY_CLIP, torch_clip

import torch  # noqa: E402  (test dependencies, pinned in pyproject)
import torch.nn.functional as F  # noqa: E402
from diffusers import AutoencoderKL as TorchVAE, UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint  # noqa: E402

STEPS, L, D = 10, layout.CONTEXT_LEN, 32


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  from safetensors.torch import save_file
  small = layout.UNET_2_LEVELS
  trained, ema, vae = layout.torch_unet(seed=1, config=small), layout.torch_unet(seed=0, config=small), layout.torch_vae()
  sd = layout.gendeg_state_dict(trained, ema, vae)
  # a small CLIP text encoder where GenDeg's checkpoint holds ViT-L/14's
  sd = {k: v for k, v in sd.items() if not k.startswith(compvis.TEXT_PREFIX)}
  clip = torch_clip(**{**TINY_CLIP, "num_hidden_layers": 1})
  sd.update({compvis.TEXT_PREFIX + k: v.contiguous() for k, v in clip.state_dict().items()})
  folder = tmp_path_factory.mktemp("release")
  save_file(sd, str(folder / "gendeg.safetensors"))
  weights = compvis.load(str(folder / "gendeg.safetensors"), num_heads=layout.HEADS, norm_num_groups=layout.GROUPS)
  torch.manual_seed(0)
  net = TorchNAFNetCombine(8, 1, (1, 2), (1, 1)).eval()
  with torch.no_grad():  # off the identity the zero-initialised block scales start at
    for name, p in net.named_parameters():
      if name.endswith(("beta", "gamma")) or p.ndim == 1:
        p.add_(0.3 * torch.randn(p.shape))
  torch.save({"state_dict": net.state_dict(), "iter": np.int64(1000)}, folder / "nafnet_sd.ckpt")
  return dict(sd=sd, folder=folder, weights=weights, config=dict(trained.config), vae_config=dict(vae.config),
              corrector=net, corrector_path=str(folder / "nafnet_sd.ckpt"))


def torch_sample(r, clean, text, null_text, mu_bins, sigma_bins, noise, step_noise, text_scale, image_scale):
  """run_single.py's sampling with --s (the corrector on the decoded sample), in PyTorch, on
  diffusers' models converted by diffusers' own single-file code (EMA weights extracted)."""
  sd, cfg, vcfg = r["sd"], r["config"], r["vae_config"]
  unet = UNet2DConditionModel.from_config(cfg)
  unet.load_state_dict(convert_ldm_unet_checkpoint(sd, cfg, extract_ema=True), strict=True)
  vae = TorchVAE.from_config(vcfg)
  vae.load_state_dict(convert_ldm_vae_checkpoint(sd, vcfg), strict=True)
  projections = {k: sd[k] for k in ("stats_proj.weight", "stats_proj.bias", "cc_projection.weight", "cc_projection.bias")}
  return torch_gendeg.sample(unet.eval(), vae.eval(), projections, clean, text, null_text, mu_bins, sigma_bins,
                             noise, step_noise, text_scale=text_scale, image_scale=image_scale,
                             corrector=r["corrector"])


def _inputs(seed, b=2):
  rng = np.random.default_rng(seed)
  f32 = lambda a: np.asarray(a, np.float32)
  return dict(clean=f32(rng.uniform(0, 1, (b, 16, 16, 3))), text=f32(rng.normal(size=(b, L, D))),
              null_text=f32(rng.normal(size=(L, D))), mu_bins=np.array([30, 77], np.int32)[:b],
              sigma_bins=np.array([12, 100], np.int32)[:b],
              noise=f32(rng.normal(size=(b, 8, 8, 4))), step_noise=f32(rng.normal(size=(STEPS, b, 8, 8, 4))))


def test_euler_ancestral_10_steps_match_a_torch_reference(release):
  x = _inputs(0)
  corrector = official_corrector(release["corrector_path"], allow_unsafe_pickle=True)
  ours = GenDeg(release["weights"], STEPS, text_scale=7.5, image_scale=1.5, corrector=corrector)(
      x["clean"], x["text"], x["null_text"], x["mu_bins"], x["sigma_bins"], x["noise"], x["step_noise"], correct=True)
  ref = torch_sample(release, **x, text_scale=7.5, image_scale=1.5)
  diff = float(np.abs(np.asarray(ours) - ref).max())
  print(f"10-step Euler-ancestral sample + structure correction, max |jaxdeg − torch| = {diff:.2e} (images in [0, 1])")
  assert ours.shape == (2, 16, 16, 3) and diff < 1e-4, diff
  assert float(np.abs(ref[0] - ref[1]).max()) > 1e-2  # the two requests really differ


class TorchNAFNetCombine(NAFNet):
  """run_single.py's NAFNet_Combine on the official NAFNet layout: 6 channels in, 3 out, zero
  padding to a multiple of 2**levels, residual from the generated image (channels 3:6)."""

  def __init__(self, width, middle, enc, dec):
    super().__init__(6, width, middle, enc, dec)
    self.ending = torch.nn.Conv2d(width, 3, 3, padding=1)

  def forward(self, inp):
    h, w = inp.shape[-2:]
    inp = F.pad(inp, (0, -w % self.padder_size, 0, -h % self.padder_size))
    return (self.ending(self.features(inp)) + inp[:, 3:6])[:, :, :h, :w]


def test_structure_corrector_matches_torch_nafnet_combine(release):
  import jax
  correct, params = official_corrector(release["corrector_path"], allow_unsafe_pickle=True)
  rng = np.random.default_rng(3)
  clean, generated = (rng.uniform(0, 1, (2, 13, 22, 3)).astype(np.float32) for _ in range(2))  # padded to 16 × 24
  ours = np.asarray(jax.jit(correct)(params, clean, generated))
  with torch.no_grad():
    ref = nhwc((release["corrector"](torch.cat([nchw(clean), nchw(generated)], 1) * 2 - 1) + 1) / 2)
  diff = float(np.abs(ours - ref).max())
  print(f"structure corrector, max |jaxdeg − torch| = {diff:.2e}")
  assert ours.shape == clean.shape and diff < 1e-4, diff
  assert float(np.abs(ours - generated).max()) > 1e-2  # not the identity


def _run(argv, capsys):
  rc = gendeg_cli.main([str(a) for a in argv])
  return rc, capsys.readouterr()


def test_command_writes_samples_and_corrects_haze(release, tmp_path, capsys, monkeypatch):
  """The whole command: the checkpoint's (small) CLIP on GenDeg's prompt with the vocabulary an
  installed package ships, sampling, correction, 8-bit files."""
  import functools
  encoders = []

  def recording(weights, vocabulary=None):
    encoders.append(real(weights, vocabulary))
    return encoders[-1]
  real = gendeg_cli.prompt_encoder
  monkeypatch.setattr(gendeg_cli, "prompt_encoder", recording)
  # the small model's head and group counts (SD-1.x's 8 and 32 are the command's)
  monkeypatch.setattr(compvis, "load", functools.partial(compvis.load, num_heads=layout.HEADS,
                                                         norm_num_groups=layout.GROUPS))
  Image.fromarray((np.random.default_rng(0).uniform(0, 255, (20, 30, 3))).astype(np.uint8)).save(tmp_path / "in.png")
  # the sizes of the parity test above: the same program, from the compilation cache
  rc, out = _run(["--weights", release["folder"] / "gendeg.safetensors", "--type", "haze", "--mu", "0.3",
                  "--sigma", "0.1", "--steps", STEPS, "--resolution", "16", "--samples", "2", "--caption", "a street",
                  "--structure", release["corrector_path"], "--trust-pickle", tmp_path / "in.png", tmp_path / "out.png"],
                 capsys)
  assert rc == 0, out.err
  a, b = (np.asarray(Image.open(tmp_path / f"out_{i}.png")) for i in range(2))
  assert a.shape == b.shape == (16, 16, 3) and np.abs(a.astype(int) - b).max() > 0
  assert set(encoders[0].cache) == {"a street, in hazy conditions", ""}
  assert encoders[0].cache[""].shape == (L, D)
  assert "structure-corrected" in out.out and "EMA" in out.out


def test_command_errors_are_one_line(release, tmp_path, capsys):
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
  (tmp_path / "pipe" / "unet").mkdir(parents=True)
  (tmp_path / "pipe" / "unet" / "config.json").write_text("{}")
  torch.save(layout.lightning_checkpoint({"x": torch.zeros(1)}), tmp_path / "gendeg.ckpt")
  good = ["--mu", "0.3", "--sigma", "0.1", tmp_path / "in.png", tmp_path / "out.png"]
  cases = [(["--weights", tmp_path / "none.ckpt", "--type", "haze", *good], "no such file"),
           (["--weights", tmp_path / "pipe", "--type", "haze", *good], "a folder"),
           (["--weights", tmp_path / "gendeg.ckpt", "--type", "haze", *good], "--trust-pickle"),
           (["--weights", tmp_path / "gendeg.ckpt", "--type", "fog", *good], "unknown degradation type 'fog'"),
           (["--weights", tmp_path / "gendeg.ckpt", "--type", "haze", "--mu", "0.9", "--sigma", "0.1",
             tmp_path / "in.png", "o.png"], "--mu 0.9: out of range"),
           (["--weights", tmp_path / "gendeg.ckpt", "--type", "haze", "--mu", "0.2", "--sigma", "-0.1",
             tmp_path / "in.png", "o.png"], "--sigma -0.1: out of range")]
  for argv, reason in cases:
    rc, out = _run(argv, capsys)
    lines = out.err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("jaxdeg: error: ") and reason in lines[0], out.err


def test_ldm_task_starts_from_a_single_file(tmp_path):
  """configs/gendeg_ldm.py:tiny with init_weights.path: the UNet (conv_in widened 4 → 8 with zeros)
  and the frozen VAE come from an SD-style CompVis file, read when the jitted init runs."""
  import flax.linen as nn
  import jax
  from safetensors.torch import save_file
  from jaxdeg.tasks.ldm import LdmTask
  from tests.tasks.gendeg.conftest import ONE_DEVICE
  from tests.utils import load_config
  torch.manual_seed(0)
  unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32,), layers_per_block=1,
                              down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), cross_attention_dim=32,
                              attention_head_dim=2, norm_num_groups=8).eval()
  vae = layout.torch_vae()
  sd = {"model.diffusion_model." + k: v for k, v in layout.to_compvis_unet(unet.state_dict(), dict(unet.config)).items()}
  sd.update({"first_stage_model." + k: v for k, v in layout.to_compvis_vae(vae.state_dict(), dict(vae.config)).items()})
  save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "sd.safetensors"))
  task = LdmTask(load_config("configs/gendeg_ldm.py:tiny", **ONE_DEVICE, init_weights__path=str(tmp_path / "sd.safetensors"),
                             vae__norm_num_groups=layout.GROUPS))
  state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
  params, ema = nn.meta.unbox(state.params), nn.meta.unbox(state.ema_params)
  k = np.asarray(params["unet"]["conv_in"]["kernel"])
  want = sd["model.diffusion_model.input_blocks.0.0.weight"].numpy().transpose(2, 3, 1, 0)
  assert k.shape == (3, 3, 8, 32) and not k[..., 4:, :].any()
  np.testing.assert_array_equal(k[..., :4, :], want)
  np.testing.assert_array_equal(np.asarray(ema["unet"]["conv_out"]["bias"]), unet.conv_out.bias.detach().numpy())
  np.testing.assert_array_equal(np.asarray(nn.meta.unbox(state.model_state["vae"])["encoder"]["conv_in"]["bias"]),
                                vae.encoder.conv_in.bias.detach().numpy())


def test_mu_sigma_from_gendeg_histogram_files(tmp_path):
  """GenDeg's data/<type>/ JSON layout, read by the synthesis plan's reader: μ from the chosen
  dataset's μ histogram, σ from the σ row of that μ bin, each uniform within its bin; datasets
  weighted as run_single.py (DenseHaze 0.05 against RESIDE's 1)."""
  n = intensity.NUM_BINS
  for dataset, mu_bin in {"RESIDE": 20, "DenseHaze": 80}.items():
    joint = np.zeros((n, n), np.int64)
    joint[mu_bin, 7] = 5
    write_official(tmp_path / "data", "haze", dataset, joint.sum(1), joint)
  rng = np.random.default_rng(0)
  hist = gendeg_cli.load_histograms(str(tmp_path / "data"))
  draws = [gendeg_cli.draw_mu_sigma(hist, "haze", rng) for _ in range(400)]
  mu_width = (intensity.MU_RANGE[1] - intensity.MU_RANGE[0]) / n
  sigma_width = (intensity.SIGMA_RANGE[1] - intensity.SIGMA_RANGE[0]) / n
  for mu, sigma, dataset in draws:
    mu_bin = 20 if dataset == "RESIDE" else 80
    assert mu_bin * mu_width <= mu - intensity.MU_RANGE[0] <= (mu_bin + 1) * mu_width
    assert 7 * sigma_width <= sigma - intensity.SIGMA_RANGE[0] <= 8 * sigma_width
  dense = sum(d == "DenseHaze" for _, _, d in draws) / len(draws)
  assert 0.01 < dense < 0.12, dense  # expected 0.05 / 1.05
  with pytest.raises(ConfigError, match="no intensity histograms for type 'rain'"):
    gendeg_cli.draw_mu_sigma(hist, "rain", rng)
  # GenDeg's bins: 128 on [0, 0.7], the top one for values at or above the range
  assert [gendeg_cli.official_bin(v, 0.7) for v in (0.0, 0.3, 0.6999, 0.7, 0.9)] == [0, 54, 127, 127, 127]


def test_synthesis_runs_on_the_released_weights(release, tmp_path, monkeypatch):
  """--mode=synthesize with generator='released': every kept record is the released model's sample
  for its job's key, request and prompt, structure-corrected where the config says."""
  import functools
  import os

  import jax
  import jax.numpy as jnp

  from jaxdeg import main
  from jaxdeg.degrade import intensity
  from jaxdeg.models.ldm.conditioning import gendeg_prompt
  from jaxdeg.synth import contact_sheet
  from tests.utils import load_config
  monkeypatch.setattr(compvis, "load", functools.partial(compvis.load, num_heads=layout.HEADS,
                                                         norm_num_groups=layout.GROUPS))
  config = load_config("configs/gendeg_synthesize.py:tiny", synth__generator="released",
                       synth__weights=str(release["folder"] / "gendeg.safetensors"),
                       synth__structure_weights=release["corrector_path"], synth__allow_unsafe_pickle=True,
                       synth__types=("haze", "rain"), synth__size=16, synth__steps=STEPS, synth__batch_size=2,
                       synth__tolerance_abs=10.0)  # random weights miss any request: keep everything
  config.synth.clean_sources = ({"kind": "samples", "photos": ("astronaut", "coffee")},)
  main.run(config, str(tmp_path), mode="synthesize")
  paths = [str(tmp_path / f) for f in os.listdir(tmp_path) if f.endswith(".array_record")]
  found = contact_sheet.pairs_by_type(paths, per_type=10)
  assert {t: len(v) for t, v in found.items()} == {"haze": 2, "rain": 2}

  weights = compvis.load(str(release["folder"] / "gendeg.safetensors"))  # the small sizes patched above
  corrector = official_corrector(release["corrector_path"], allow_unsafe_pickle=True)
  model = GenDeg(weights, steps=STEPS, corrector=corrector)
  encoder = gendeg_cli.prompt_encoder(weights)
  correct = jax.jit(lambda clean, generated: corrector[0](corrector[1], clean, generated))
  for type_name, pairs in found.items():  # both records of a type at once: the batch size synthesis ran
    clean = jnp.asarray(np.stack([c for c, _, _ in pairs]) / 255.0, jnp.float32)
    metas = [m for _, _, m in pairs]
    assert all(m["generator"].startswith("gendeg-released") for m in metas)
    assert all(m["structure_corrected"] == (type_name == "haze") for m in metas)
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(config.synth.seed), m["job"]) for m in metas])
    text = encoder([gendeg_prompt(type_name)] * 2)
    want = model(clean, jnp.asarray(text), jnp.asarray(encoder.null),
                 intensity.mu_bin(jnp.asarray([m["mu"] for m in metas], jnp.float32)),
                 intensity.sigma_bin(jnp.asarray([m["sigma"] for m in metas], jnp.float32)),
                 *model.noises_from_keys(keys, 16, 16))
    if type_name == "haze":
      want = correct(clean, want)
    got = np.stack([d for _, d, _ in pairs]).astype(np.float64)
    assert np.abs(np.clip(np.asarray(want), 0, 1) * 255 - got).max() <= 1.0, type_name
