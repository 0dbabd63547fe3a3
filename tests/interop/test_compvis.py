"""CompVis / Lightning checkpoint import against diffusers' own single-file conversion.

A small random GenDeg-like checkpoint in the CompVis layout (tests/interop/compvis_layout.py: a
trained UNet, a different EMA UNet, a VAE, GenDeg's projections) is read by jaxdeg and, as the
reference, converted by `diffusers.loaders.single_file_utils` (EMA extraction included) into
diffusers' PyTorch models; the UNet's ε and the VAE's encode/decode must agree within 1e-4.
"""
import jax
import numpy as np
import pytest

from jaxdeg.interop import compvis
from jaxdeg.interop.diffusers import WeightImportError
from jaxdeg.models.ldm import DegradationContext
from tests.interop import compvis_layout as layout
from tests.models.ldm.torch_ref import nchw, nhwc

import torch  # noqa: E402  (test dependencies, pinned in pyproject)
from diffusers import AutoencoderKL as TorchVAE, UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  from safetensors.torch import save_file
  trained, ema, vae = layout.torch_unet(seed=1), layout.torch_unet(seed=0), layout.torch_vae()
  sd = layout.gendeg_state_dict(trained, ema, vae)
  layout.assert_diffusers_round_trip(sd, unet=trained, vae=vae)
  folder = tmp_path_factory.mktemp("compvis")
  save_file(sd, str(folder / "gendeg.safetensors"))
  torch.save(layout.lightning_checkpoint(sd), folder / "gendeg.ckpt")
  torch.save({"state_dict": sd}, folder / "tensors_only.ckpt")
  weights = compvis.load(str(folder / "gendeg.safetensors"), num_heads=layout.HEADS, norm_num_groups=layout.GROUPS)
  return dict(sd=sd, folder=folder, weights=weights, config=dict(trained.config), vae_config=dict(vae.config))


def _diffusers_unet(sd, config, extract_ema):
  model = UNet2DConditionModel.from_config(config)
  model.load_state_dict(convert_ldm_unet_checkpoint(sd, config, extract_ema=extract_ema), strict=True)
  return model.eval()


def test_unet_ema_and_trained_weights_match_diffusers_conversion(ckpt):
  w = ckpt["weights"]
  assert w.used_ema and w.unet.in_channels == 8 and w.unet.block_out_channels == (16, 32, 32)
  assert w.unet.attention_levels == (True, True, False) and w.unet.layers_per_block == 1
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 8, 8, 8)).astype(np.float32)
  t = np.array([17.0, 803.25], np.float32)
  ctx = rng.normal(size=(2, layout.CONTEXT_LEN, 32)).astype(np.float32)
  apply = jax.jit(w.unet.apply)
  trained, _ = compvis.unet_params(ckpt["sd"], w.unet, use_ema=False)
  diffs = []
  for params, extract_ema in ((w.unet_params, True), (trained, False)):
    ours = np.asarray(apply({"params": params}, x, t, ctx))
    with torch.no_grad():
      ref = nhwc(_diffusers_unet(ckpt["sd"], ckpt["config"], extract_ema)(
          nchw(x), torch.from_numpy(t), encoder_hidden_states=torch.from_numpy(ctx)).sample)
    diffs.append(float(np.abs(ours - ref).max()))
  print(f"UNet ε max |jaxdeg − diffusers|: EMA {diffs[0]:.2e}, trained {diffs[1]:.2e}")
  assert max(diffs) < 1e-4, diffs
  # the two weight sets really differ, so the EMA choice is tested
  assert float(np.abs(w.unet_params["conv_in"]["kernel"] - trained["conv_in"]["kernel"]).max()) > 1e-2


def test_vae_encode_decode_match_diffusers_conversion(ckpt):
  w = ckpt["weights"]
  cfg = ckpt["vae_config"]
  ref = TorchVAE.from_config(cfg)
  ref.load_state_dict(convert_ldm_vae_checkpoint(ckpt["sd"], cfg), strict=True)
  rng = np.random.default_rng(1)
  img = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  z = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
  v = {"params": w.vae_params}
  (mean, logvar), dec = jax.jit(lambda v, img, z: (w.vae.apply(v, img, method=w.vae.encode),
                                                   w.vae.apply(v, z, method=w.vae.decode)))(v, img, z)
  with torch.no_grad():
    dist = ref.eval().encode(nchw(img)).latent_dist
    tdec = ref.decode(nchw(z)).sample
  diffs = [float(np.abs(np.asarray(a) - nhwc(b)).max()) for a, b in ((mean, dist.mean), (logvar, dist.logvar), (dec, tdec))]
  print(f"VAE max |jaxdeg − diffusers|: mean {diffs[0]:.2e}, logvar {diffs[1]:.2e}, decode {diffs[2]:.2e}")
  assert max(diffs) < 1e-4, diffs


def test_context_projections_compute_what_gendeg_computes(ckpt):
  """run_single.py: cc_projection(cat([CLIP(prompt), stats_proj(stats).transpose(1, 2)], -1))."""
  sd, w = ckpt["sd"], ckpt["weights"]
  rng = np.random.default_rng(2)
  text = rng.normal(size=(3, layout.CONTEXT_LEN, 32)).astype(np.float32)
  stats = np.zeros((3, 2, 129), np.float32)
  stats[np.arange(3), 0, [5, 60, 128]] = 1
  stats[np.arange(3), 1, [0, 127, 128]] = 1
  ours = DegradationContext(context_len=layout.CONTEXT_LEN, context_dim=32, types=()).apply(
      {"params": w.context}, stats, text=text)
  with torch.no_grad():
    s = torch.nn.functional.linear(torch.from_numpy(stats), sd["stats_proj.weight"], sd["stats_proj.bias"])
    ref = torch.nn.functional.linear(torch.cat([torch.from_numpy(text), s.transpose(1, 2)], -1),
                                     sd["cc_projection.weight"], sd["cc_projection.bias"]).numpy()
  assert float(np.abs(np.asarray(ours) - ref).max()) < 1e-5
  assert set(w.text) == {"text_model.final_layer_norm.weight", "text_model.embeddings.position_ids"}


def test_lightning_ckpt_needs_the_opt_in(ckpt):
  path = str(ckpt["folder"] / "gendeg.ckpt")
  with pytest.raises(Exception):  # what torch's safe loader makes of a real Lightning file
    torch.load(path, weights_only=True)
  with pytest.raises(WeightImportError) as e:
    compvis.read_state_dict(path)
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith(path) and "allow_unsafe_pickle=True" in msg, msg
  with pytest.raises(WeightImportError, match="--trust-pickle"):
    compvis.read_state_dict(path, flag="--trust-pickle")
  full = compvis.read_state_dict(path, allow_unsafe_pickle=True)
  plain = compvis.read_state_dict(str(ckpt["folder"] / "tensors_only.ckpt"))  # tensors only: no opt-in needed
  flat = compvis.read_state_dict(str(ckpt["folder"] / "gendeg.safetensors"))
  assert set(full) == set(plain) == set(flat)
  for k in flat:
    np.testing.assert_array_equal(full[k], flat[k])
  assert full["model_ema.num_updates"].dtype == np.int32


def test_sd15_layout_widens_conv_in_and_bad_files(ckpt, tmp_path):
  sd = {k: v for k, v in ckpt["sd"].items() if not k.startswith(("model_ema.", "stats_proj", "cc_projection"))}
  sd["model.diffusion_model.input_blocks.0.0.weight"] = sd["model.diffusion_model.input_blocks.0.0.weight"][:, :4]
  w = compvis.load("sd15", state_dict={k: v.numpy() for k, v in sd.items()}, in_channels=8, num_heads=layout.HEADS,
                   norm_num_groups=layout.GROUPS)
  k = w.unet_params["conv_in"]["kernel"]
  assert not w.used_ema and w.context is None and k.shape == (3, 3, 8, 16) and not k[:, :, 4:].any()
  np.testing.assert_array_equal(k[:, :, :4], sd["model.diffusion_model.input_blocks.0.0.weight"].numpy().transpose(2, 3, 1, 0))
  for path, reason in [(tmp_path / "none.ckpt", "no such file"), (tmp_path, "a folder")]:
    with pytest.raises(WeightImportError, match=reason):
      compvis.read_state_dict(str(path))
  with pytest.raises(WeightImportError, match="no UNet tensors"):
    compvis.load("vae only", state_dict={"first_stage_model.x": np.zeros(1)})


def test_sd15_sized_layout():
  """SD-1.5's own sizes (diffusers' SD-1.x UNet and VAE on the meta device, so no weights are
  made; zero-stride arrays in the CompVis layout): the architecture is read off the shapes and
  every tensor finds its place, conv_in widened to GenDeg's 8 channels."""
  with torch.device("meta"):
    unet = UNet2DConditionModel(in_channels=4, cross_attention_dim=768)
    vae = TorchVAE(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                   up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2)
  zeros = lambda t: np.broadcast_to(np.zeros((), np.float32), tuple(t.shape))
  sd = {"model.diffusion_model." + k: zeros(v) for k, v in layout.to_compvis_unet(unet.state_dict(), dict(unet.config)).items()}
  sd.update({"first_stage_model." + k: zeros(v) for k, v in layout.to_compvis_vae(vae.state_dict(), dict(vae.config)).items()})
  assert "model.diffusion_model.output_blocks.5.2.conv.weight" in sd and "model.diffusion_model.output_blocks.2.1.conv.weight" in sd
  w = compvis.load("sd-1.5 sized", state_dict=sd, in_channels=8)
  u = w.unet
  assert (u.block_out_channels, u.attention_levels, u.layers_per_block, u.cross_attention_dim) == (
      (320, 640, 1280, 1280), (True, True, True, False), 2, 768)
  assert w.unet_params["conv_in"]["kernel"].shape == (3, 3, 8, 320)
  assert (w.vae.block_out_channels, w.vae.layers_per_block, w.vae.latent_channels) == ((128, 256, 512, 512), 2, 4)
