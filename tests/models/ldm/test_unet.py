"""UNet vs diffusers' UNet2DConditionModel, diffusers weight import, dual guidance."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.diffusion import guidance
from jaxdeg.interop import diffusers as imp
from jaxdeg.models.ldm.unet import UNet
from tests.models.ldm.torch_ref import nchw, nhwc, torch_unet

import torch  # noqa: E402  (test dependency, pinned in pyproject)
import diffusers  # noqa: E402,F401

B, H, W, L = 3, 9, 10, 5  # odd height: exercises diffusers' upsample-to-skip-size path


@pytest.fixture(scope="module")
def ref():
  tu = torch_unet(in_channels=8)
  model = UNet(**imp.unet_kwargs(dict(tu.config), in_channels=8))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(B, H, W, 8)).astype(np.float32)
  t = np.array([3.0, 411.5, 999.0], np.float32)
  ctx = rng.normal(size=(B, L, 32)).astype(np.float32)
  target = jax.eval_shape(model.init, jax.random.key(0), x, t, ctx)
  return dict(tu=tu, model=model, x=x, t=t, ctx=ctx, target=target, apply=jax.jit(model.apply),
              params=imp.unet_params(tu.state_dict(), target))


def test_matches_diffusers(ref):
  y = ref["apply"]({"params": ref["params"]}, ref["x"], ref["t"], ref["ctx"])
  with torch.no_grad():
    ty = nhwc(ref["tu"](nchw(ref["x"]), torch.from_numpy(ref["t"]), encoder_hidden_states=torch.from_numpy(ref["ctx"])).sample)
  assert y.shape == (B, H, W, 4) and y.dtype == jnp.float32
  diff = float(np.abs(np.asarray(y) - ty).max())
  assert diff < 1e-4, diff


def test_input_conv_widened_with_zeros_keeps_the_4_channel_model(ref):
  tu4 = torch_unet(in_channels=4, seed=1)
  params = imp.unet_params(tu4.state_dict(), ref["target"])
  k = params["conv_in"]["kernel"]
  assert k.shape == (3, 3, 8, 32) and not k[:, :, 4:].any()
  # whatever the clean-image latent, the widened model computes the 4-channel one
  y = ref["apply"]({"params": params}, ref["x"], ref["t"], ref["ctx"])
  with torch.no_grad():
    ty = nhwc(tu4(nchw(ref["x"][..., :4]), torch.from_numpy(ref["t"]), encoder_hidden_states=torch.from_numpy(ref["ctx"])).sample)
  assert float(np.abs(np.asarray(y) - ty).max()) < 1e-4


def test_dual_guidance_unit_scales_is_the_conditional_model(ref):
  apply, p = ref["apply"], {"params": ref["params"]}
  calls = []

  def apply_fn(x, t, cond):  # cond = (clean-image latent, context)
    calls.append(x.shape[0])
    image, ctx = cond
    return apply(p, jnp.concatenate([x, image], axis=-1), jnp.broadcast_to(t, (x.shape[0],)), ctx)

  rng = np.random.default_rng(1)
  x = rng.normal(size=(1, H, W, 4)).astype(np.float32)
  image, ctx, null_ctx = (rng.normal(size=s).astype(np.float32) for s in [(1, H, W, 4), (1, L, 32), (1, L, 32)])
  cond, image_only, uncond = (image, ctx), (image, null_ctx), (np.zeros_like(image), null_ctx)
  guided = guidance.dual(apply_fn, cond, image_only, uncond, text_scale=1.0, image_scale=1.0)(x, np.float32(500.0))
  assert calls == [3]  # the three conditionings in one batched call
  plain = apply_fn(np.concatenate([x] * 3), np.float32(500.0), tuple(np.concatenate([c] * 3) for c in cond))[:1]
  assert float(jnp.abs(guided - plain).max()) < 1e-5
  # other scales move away from it
  other = guidance.dual(apply_fn, cond, image_only, uncond, 7.5, 1.5)(x, np.float32(500.0))
  assert float(jnp.abs(other - plain).max()) > 1e-3


def test_import_from_folder_safetensors_and_torch_file(ref, tmp_path):
  ref["tu"].save_pretrained(tmp_path / "pipe" / "unet")  # config.json + safetensors
  model, variables = imp.import_unet(str(tmp_path / "pipe"), in_channels=8)
  assert model.block_out_channels == (32, 64) and model.attention_levels == (True, False) and model.num_heads == 4
  jax.tree.map(np.testing.assert_array_equal, variables["params"], ref["params"])
  torch.save(ref["tu"].state_dict(), tmp_path / "unet.bin")
  sd = imp.load_state_dict(str(tmp_path / "unet.bin"))
  jax.tree.map(np.testing.assert_array_equal, imp.unet_params(sd, ref["target"]), ref["params"])


def test_bfloat16_safetensors_reader(tmp_path):
  from safetensors.torch import save_file
  tensors = {"a": torch.randn(3, 4).to(torch.bfloat16), "b": torch.randn(5).half(), "c": torch.randn(2, 2)}
  save_file(tensors, str(tmp_path / "t.safetensors"))
  from jaxdeg.interop.safetensors_io import load
  got = load(str(tmp_path / "t.safetensors"))
  for k, v in tensors.items():
    np.testing.assert_array_equal(got[k], v.float().numpy())


def test_clear_errors(ref):
  sd = dict(ref["tu"].state_dict())
  bad = dict(sd)
  del bad["mid_block.attentions.0.proj_in.weight"]
  bad["extra.layer.weight"] = torch.zeros(3)
  bad["conv_out.weight"] = torch.zeros(4, 32, 1, 1)
  with pytest.raises(imp.WeightImportError) as e:
    imp.unet_params(bad, ref["target"])
  msg = str(e.value)
  assert "mid_block/attentions_0/proj_in/kernel" in msg and "missing" in msg
  assert "extra.layer.weight" in msg and "unexpected" in msg
  assert "conv_out.weight" in msg and "(3, 3, 32, 4)" in msg and "mismatch" in msg
  assert "missing from the file: mid_block/attentions_0/proj_in/kernel |" in msg  # not conv_out
  with pytest.raises(imp.WeightImportError, match="no such file"):
    imp.load_state_dict("/nonexistent/unet")
  ldm = {"model.diffusion_model.input_blocks.0.0.weight": np.zeros((1,))}
  with pytest.raises(imp.WeightImportError, match="CompVis"):
    imp.unet_params(ldm, ref["target"])
  with pytest.raises(imp.WeightImportError, match="addition_embed_type"):
    imp.unet_kwargs({**dict(ref["tu"].config), "addition_embed_type": "text_time"})


def test_sd15_layout_param_count_remat_and_bf16():
  # SD-1.5's UNet has 859,520,964 parameters; GenDeg's 4 extra input channels add 4·320·9
  sd = UNet()
  args = (jnp.zeros((1, 8, 8, 8)), jnp.zeros((1,)), jnp.zeros((1, 77, 768)))
  n = sum(x.size for x in jax.tree.leaves(nn.unbox(jax.eval_shape(sd.init, jax.random.key(0), *args))))
  assert n == 859_520_964 + 4 * 320 * 9
  # remat and bf16 compute trace through a gradient; parameters stay float32, output float32
  small = dict(block_out_channels=(16, 32), layers_per_block=1, attention_levels=(True, False), num_heads=2,
               cross_attention_dim=8, norm_num_groups=4)
  args = (jnp.zeros((1, 8, 8, 8)), jnp.zeros((1,)), jnp.zeros((1, 3, 8)))
  m = UNet(**small, remat=True, dtype=jnp.bfloat16)
  v = nn.unbox(jax.eval_shape(m.init, jax.random.key(0), *args))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v))
  grads = jax.eval_shape(jax.grad(lambda v: m.apply(v, *args).sum()), v)
  assert jax.tree.structure(grads) == jax.tree.structure(v)
  assert jax.eval_shape(m.apply, v, *args).dtype == jnp.float32
