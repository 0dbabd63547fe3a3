"""Small random checkpoints in the original CompVis / Lightning layout, made from diffusers models.

`to_compvis_unet` / `to_compvis_vae` rename a diffusers state dict to CompVis keys (this test-side
mapping is checked by `assert_diffusers_round_trip`: diffusers' own single-file conversion must give
the diffusers state dict back, key for key and value for value). The checkpoints then go through
jaxdeg's importer and, as the reference, through diffusers' conversion into diffusers' models.
"""
import numpy as np

# SD-1.x's layout in small: attention at every level but the deepest, so both of CompVis's upsampler
# positions occur (output_blocks.i.2.conv after an attention, output_blocks.i.1.conv without one)
UNET = dict(block_out_channels=(16, 32, 32), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
            attention_head_dim=2, norm_num_groups=8)
# two levels: a cheaper program for the sampler tests
UNET_2_LEVELS = {**UNET, "block_out_channels": (16, 32), "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
                 "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D")}
HEADS, GROUPS, CONTEXT_LEN = 2, 8, 5
VAE = dict(block_out_channels=(16, 32), layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
           up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def torch_unet(in_channels=8, seed=0, config=UNET):
  import torch
  from diffusers import UNet2DConditionModel
  from tests.models.ldm.torch_ref import _perturb
  torch.manual_seed(seed)
  return _perturb(UNet2DConditionModel(sample_size=8, in_channels=in_channels, out_channels=4, **config), seed)


def torch_vae(seed=0):
  import torch
  from diffusers import AutoencoderKL
  from tests.models.ldm.torch_ref import _perturb
  torch.manual_seed(seed)
  return _perturb(AutoencoderKL(in_channels=3, out_channels=3, **VAE), seed)


def to_compvis_unet(sd, config):
  per = config["layers_per_block"] + 1
  attention = [t.startswith("CrossAttn") for t in config["down_block_types"]]
  out = {}
  for key, v in sd.items():
    p = key.split(".")
    if p[0] == "conv_in":
      new = "input_blocks.0.0." + p[1]
    elif p[0] == "time_embedding":
      new = f"time_embed.{0 if p[1] == 'linear_1' else 2}." + p[2]
    elif p[0] == "conv_norm_out":
      new = "out.0." + p[1]
    elif p[0] == "conv_out":
      new = "out.2." + p[1]
    elif p[0] == "down_blocks":
      level, kind = int(p[1]), p[2]
      if kind == "downsamplers":
        new = f"input_blocks.{(level + 1) * per}.0.op." + ".".join(p[5:])
      else:
        block = 1 + level * per + int(p[3])
        new = (f"input_blocks.{block}.0." + _RESNET[p[4]] + "." + ".".join(p[5:]) if kind == "resnets"
               else f"input_blocks.{block}.1." + ".".join(p[4:]))
    elif p[0] == "mid_block":
      new = (f"middle_block.{0 if p[2] == '0' else 2}." + _RESNET[p[3]] + "." + ".".join(p[4:])
             if p[1] == "resnets" else "middle_block.1." + ".".join(p[3:]))
    elif p[0] == "up_blocks":
      level, kind = int(p[1]), p[2]
      if kind == "upsamplers":
        # the upsampler follows the level's last resnet, and its attention when it has one
        has_attention = attention[len(attention) - 1 - level]
        new = f"output_blocks.{level * per + per - 1}.{2 if has_attention else 1}.conv." + ".".join(p[5:])
      else:
        block = level * per + int(p[3])
        new = (f"output_blocks.{block}.0." + _RESNET[p[4]] + "." + ".".join(p[5:]) if kind == "resnets"
               else f"output_blocks.{block}.1." + ".".join(p[4:]))
    else:
      raise KeyError(key)
    out[new] = v
  return out


_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}


def to_compvis_vae(sd, config):
  levels = len(config["block_out_channels"])
  out = {}
  for key, v in sd.items():
    p = key.split(".")
    if p[0] in ("quant_conv", "post_quant_conv") or p[1] in ("conv_in", "conv_out"):
      new = key
    elif p[1] == "conv_norm_out":
      new = f"{p[0]}.norm_out.{p[2]}"
    elif p[1] == "mid_block" and p[2] == "resnets":
      new = f"{p[0]}.mid.block_{int(p[3]) + 1}." + ".".join(p[4:]).replace("conv_shortcut", "nin_shortcut")
    elif p[1] == "mid_block":
      new = f"{p[0]}.mid.attn_1.{_VAE_ATTN[p[4]]}.{p[-1]}"
      if v.ndim == 2:  # CompVis's attention projections are 1×1 convs
        v = v[:, :, None, None]
    else:
      level = int(p[2]) if p[0] == "encoder" else levels - 1 - int(p[2])
      side = "down" if p[0] == "encoder" else "up"
      if p[3] == "resnets":
        new = f"{p[0]}.{side}.{level}.block.{p[4]}." + ".".join(p[5:]).replace("conv_shortcut", "nin_shortcut")
      else:
        new = f"{p[0]}.{side}.{level}.{'downsample' if side == 'down' else 'upsample'}." + ".".join(p[5:])
    out[new] = v
  return out


def assert_diffusers_round_trip(compvis, unet=None, vae=None):
  """diffusers' single-file conversion of `compvis` gives back the diffusers models' state dicts."""
  from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
  for model, convert in ((unet, lambda c: convert_ldm_unet_checkpoint(compvis, c)),
                         (vae, lambda c: convert_ldm_vae_checkpoint(compvis, c))):
    if model is None:
      continue
    back, sd = convert(dict(model.config)), model.state_dict()
    assert set(back) == set(sd), sorted(set(back) ^ set(sd))[:5]
    for k, v in sd.items():
      assert back[k].shape == v.shape and bool((back[k] == v).all()), k


def ema_names(unet_sd):
  """LitEma's names of a CompVis UNet state dict (keys without 'model.diffusion_model.')."""
  return {k: "model_ema.diffusion_model" + k.replace(".", "") for k in unet_sd}


def gendeg_state_dict(trained, ema, vae, seed=0, context_dim=32):
  """A GenDeg-like checkpoint: trained UNet under model.diffusion_model.*, the EMA UNet under
  model_ema.*, the VAE under first_stage_model.*, stats_proj / cc_projection, CLIP-like text
  tensors and the diffusion buffers, all torch tensors."""
  import torch
  g = torch.Generator().manual_seed(seed)
  unet_sd = to_compvis_unet(trained.state_dict(), dict(trained.config))
  ema_sd = to_compvis_unet(ema.state_dict(), dict(ema.config))
  sd = {"model.diffusion_model." + k: v for k, v in unet_sd.items()}
  sd.update({ema_names(ema_sd)[k]: v for k, v in ema_sd.items()})
  sd["model_ema.decay"], sd["model_ema.num_updates"] = torch.tensor(0.9999), torch.tensor(7, dtype=torch.int32)
  sd.update({"first_stage_model." + k: v for k, v in to_compvis_vae(vae.state_dict(), dict(vae.config)).items()})
  sd["stats_proj.weight"] = 0.3 * torch.randn(CONTEXT_LEN, 129, generator=g)
  sd["stats_proj.bias"] = 0.1 * torch.randn(CONTEXT_LEN, generator=g)
  cc = torch.cat([torch.eye(context_dim), 0.2 * torch.randn(context_dim, 2, generator=g)], 1)
  sd["cc_projection.weight"] = cc + 0.05 * torch.randn(cc.shape, generator=g)
  sd["cc_projection.bias"] = 0.05 * torch.randn(context_dim, generator=g)
  sd["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.ones(context_dim)
  sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(CONTEXT_LEN)[None]
  betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
  sd["betas"], sd["alphas_cumprod"] = betas.float(), torch.cumprod(1 - betas, 0).float()
  return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def lightning_checkpoint(state_dict):
  """What PyTorch Lightning saves around a state dict: numpy scalars and plain objects included."""
  return {"epoch": 3, "global_step": np.int64(1200), "pytorch-lightning_version": "1.4.2",
          "state_dict": state_dict, "lr_schedulers": [{"base_lrs": [np.float64(1e-4)], "last_epoch": 3}],
          "optimizer_states": [{"param_groups": [{"lr": np.float64(1e-4), "betas": (0.9, 0.999)}]}],
          "callbacks": {"ModelCheckpoint": {"best_model_score": np.float32(0.12)}}}
