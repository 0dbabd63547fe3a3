"""Import diffusers-format Stable Diffusion weights (UNet2DConditionModel, AutoencoderKL) from a
local folder or file into jaxdeg's parameter trees.

Our module names are diffusers' state-dict keys with every `.N` index folded into the name before
it (`down_blocks.0.resnets.1.conv1.weight` → `down_blocks_0/resnets_1/conv1/kernel`), so import is
a rename plus layout changes: conv OIHW → HWIO, linear (out, in) → (in, out), norm weight → scale.
Older VAE files name the attention projections query/key/value/proj_attn, sometimes as 1×1 convs:
both are accepted. The UNet's input conv can be widened (GenDeg/InstructPix2Pix: 4 → 8 channels)
with the new input channels set to zero, so the imported model starts as the 4-channel one.

Reads .safetensors without torch; torch state dicts (.bin/.pt/.ckpt) need torch installed.
Nothing here downloads anything.
"""
import glob
import json
import os

import flax.linen as nn
import jax
import numpy as np

from jaxdeg.interop import safetensors_io
from jaxdeg.interop.checks import WeightImportError, raise_if_unfit

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
                "pytorch_model.bin")
_LEGACY_VAE = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out_0"}


# ------------------------------------------------------------------------------------------------
# reading files


def _resolve(path, subfolder):
  """A weight file inside `path` (a file, a model folder, or a pipeline folder with `subfolder`)."""
  if os.path.isfile(path):
    return path
  if not os.path.isdir(path):
    raise WeightImportError(f"{path}: no such file or folder")
  for folder in ([os.path.join(path, subfolder)] if subfolder else []) + [path]:
    for name in WEIGHT_NAMES:
      if os.path.isfile(os.path.join(folder, name)):
        return os.path.join(folder, name)
    index = sorted(glob.glob(os.path.join(folder, "*.safetensors.index.json")))
    if index:
      return index[0]
  raise WeightImportError(f"{path}: no weights found (looked for {', '.join(WEIGHT_NAMES)}"
                          f"{' in ' + subfolder + '/ and ./' if subfolder else ''})")


def _torch_load(path):
  try:
    import torch
  except ImportError:
    raise WeightImportError(f"{path}: reading a torch state dict needs torch; install torch or convert the "
                            f"file to .safetensors") from None
  try:
    sd = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for unreadable files
    raise WeightImportError(f"{path}: cannot read as a torch state dict: {e}") from None
  if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
    sd = sd["state_dict"]
  return {k: _numpy(v) for k, v in sd.items() if hasattr(v, "detach")}


def load_state_dict(path, subfolder=None):
  """{key: float32 ndarray} from a .safetensors / sharded safetensors index / torch file or folder."""
  f = _resolve(path, subfolder)
  try:
    if f.endswith(".index.json"):
      with open(f) as fh:
        shards = sorted(set(json.load(fh)["weight_map"].values()))
      sd = {}
      for s in shards:
        sd.update(safetensors_io.load(os.path.join(os.path.dirname(f), s)))
      return sd
    if f.endswith(".safetensors"):
      return safetensors_io.load(f)
  except (ValueError, KeyError, OSError) as e:
    raise WeightImportError(f"{f}: cannot read weights: {e}") from None
  return _torch_load(f)


def load_config(path, subfolder=None):
  """The diffusers config.json next to the weights, or None."""
  for folder in ([os.path.join(path, subfolder)] if subfolder else []) + [path]:
    f = os.path.join(folder, "config.json")
    if os.path.isfile(f):
      with open(f) as fh:
        return json.load(fh)
  return None


# ------------------------------------------------------------------------------------------------
# configs → module fields


def unet_kwargs(config, in_channels=8):
  """`jaxdeg.models.ldm.UNet` fields from a diffusers UNet2DConditionModel config (SD-1.x family)."""
  unsupported = {k: config.get(k) for k in ("class_embed_type", "addition_embed_type", "time_cond_proj_dim",
                                             "encoder_hid_dim", "num_class_embeds", "projection_class_embeddings_input_dim")
                 if config.get(k) is not None}
  if config.get("only_cross_attention") not in (None, False) or config.get("dual_cross_attention"):
    unsupported["only/dual_cross_attention"] = True
  down = config.get("down_block_types", ())
  if any(t not in ("CrossAttnDownBlock2D", "DownBlock2D") for t in down):
    unsupported["down_block_types"] = down
  if config.get("mid_block_type", "UNetMidBlock2DCrossAttn") != "UNetMidBlock2DCrossAttn":
    unsupported["mid_block_type"] = config["mid_block_type"]
  tlayers = config.get("transformer_layers_per_block", 1)
  if not isinstance(tlayers, int):
    unsupported["transformer_layers_per_block"] = tlayers
  if unsupported:
    raise WeightImportError(f"UNet config: unsupported features {unsupported} (jaxdeg implements the SD-1.x layout)")
  heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
  return dict(
      in_channels=in_channels, out_channels=config.get("out_channels", 4),
      block_out_channels=tuple(config["block_out_channels"]), layers_per_block=config.get("layers_per_block", 2),
      attention_levels=tuple(t.startswith("CrossAttn") for t in down),
      num_heads=heads if isinstance(heads, int) else tuple(heads),
      cross_attention_dim=config.get("cross_attention_dim", 768), norm_num_groups=config.get("norm_num_groups", 32),
      norm_eps=config.get("norm_eps", 1e-5), transformer_layers=tlayers,
      use_linear_projection=bool(config.get("use_linear_projection", False)),
      flip_sin_to_cos=config.get("flip_sin_to_cos", True), freq_shift=config.get("freq_shift", 0))


def vae_kwargs(config):
  """`jaxdeg.models.ldm.AutoencoderKL` fields from a diffusers AutoencoderKL config."""
  if config.get("act_fn", "silu") != "silu":
    raise WeightImportError(f"VAE config: act_fn {config['act_fn']!r} unsupported (only silu)")
  return dict(
      in_channels=config.get("in_channels", 3), out_channels=config.get("out_channels", 3),
      block_out_channels=tuple(config["block_out_channels"]), layers_per_block=config.get("layers_per_block", 2),
      latent_channels=config.get("latent_channels", 4), norm_num_groups=config.get("norm_num_groups", 32),
      scaling_factor=config.get("scaling_factor", 0.18215), mid_attention=config.get("mid_block_add_attention", True),
      use_quant_conv=config.get("use_quant_conv", True), use_post_quant_conv=config.get("use_post_quant_conv", True))


# ------------------------------------------------------------------------------------------------
# state dict → param tree


def _path(key):
  """'a.b.0.c.weight' → (('a', 'b_0', 'c'), 'weight')."""
  out = []
  for part in key.split("."):
    if part.isdigit() and out:
      out[-1] = f"{out[-1]}_{part}"
    else:
      out.append(_LEGACY_VAE.get(part, part))
  return tuple(out[:-1]), out[-1]


def _to_flax(a, leaf, target_shape):
  """Torch tensor `a` named `leaf` → (flax leaf name, array in flax layout) for a target shape."""
  if leaf == "bias":
    return "bias", a
  if leaf != "weight":
    return leaf, a
  if len(target_shape) == 4:  # conv HWIO
    if a.ndim == 2:  # a linear layer stored where we have a 1×1 conv
      a = a[:, :, None, None]
    return "kernel", a.transpose(2, 3, 1, 0) if a.ndim == 4 else a
  if len(target_shape) == 2:  # dense (in, out)
    if a.ndim == 4 and a.shape[2:] == (1, 1):  # a 1×1 conv stored where we have a linear layer
      a = a[:, :, 0, 0]
    return "kernel", a.T if a.ndim == 2 else a
  return "scale", a


def _numpy(a):
  """float32 numpy from a numpy array or a torch tensor (any float dtype, bfloat16 included)."""
  if hasattr(a, "detach"):
    a = a.detach().cpu().float().numpy()
  return np.asarray(a, np.float32)


def _flatten(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _flatten(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _abstract_params(target):
  """Plain nested dict of shapes from params, variables ({'params': ...}), boxed or abstract."""
  target = nn.meta.unbox(target)
  if hasattr(target, "unfreeze"):
    target = target.unfreeze()
  if "params" in target and isinstance(target["params"], dict):
    target = target["params"]
  return jax.tree.map(lambda x: tuple(x.shape), target)


def convert(state_dict, target, *, what="model", expand_input=("conv_in",)):
  """Map a diffusers state dict onto the structure of `target` (our params, possibly boxed or
  abstract from `jax.eval_shape`). Input convs named in `expand_input` whose target has more input
  channels than the file are zero-extended. Returns a nested dict of float32 arrays.
  Raises WeightImportError naming missing keys, unexpected keys and shape mismatches."""
  shapes = dict(_flatten(_abstract_params(target)))
  out, unexpected, mismatched, seen = {}, [], [], set()
  for key, a in state_dict.items():
    modpath, leaf = _path(key)
    if leaf == "weight":
      name = "kernel" if modpath + ("kernel",) in shapes else "scale"
    else:
      name = leaf
    full = modpath + (name,)
    if full not in shapes:
      unexpected.append(key)
      continue
    tshape = shapes[full]
    _, arr = _to_flax(_numpy(a), leaf, tshape)
    if arr.shape != tshape and len(modpath) == 1 and modpath[0] in expand_input and name == "kernel" \
        and arr.ndim == 4 and arr.shape[:2] + arr.shape[3:] == tshape[:2] + tshape[3:] and arr.shape[2] < tshape[2]:
      # new input channels start at zero: the widened model computes what the file's model did
      arr = np.concatenate([arr, np.zeros(tshape[:2] + (tshape[2] - arr.shape[2],) + tshape[3:], arr.dtype)], axis=2)
    if arr.shape != tshape:
      mismatched.append(f"{key}: file {tuple(a.shape)} → {arr.shape}, model {'/'.join(full)} wants {tshape}")
      seen.add(full)  # reported as a mismatch, not as missing
      continue
    seen.add(full)
    node = out
    for p in full[:-1]:
      node = node.setdefault(p, {})
    node[full[-1]] = arr
  missing = sorted(k for p, k in ((p, "/".join(p)) for p in shapes) if p not in seen)
  hint = ""
  if any(k.startswith(("model.diffusion_model.", "first_stage_model.")) for k in state_dict):
    hint = " (this looks like an original CompVis/LDM checkpoint: read it with jaxdeg.interop.compvis.load)"
  raise_if_unfit(what, mismatched=mismatched, missing=missing, unexpected=unexpected,
                 missing_noun="parameter(s)", hint=hint)
  return out


def unet_params(state_dict, target):
  """diffusers UNet2DConditionModel state dict → our UNet params (conv_in widened with zeros)."""
  return convert(state_dict, target, what="UNet")


def vae_params(state_dict, target):
  """diffusers AutoencoderKL state dict → our AutoencoderKL params."""
  return convert(state_dict, target, what="VAE", expand_input=())


# ------------------------------------------------------------------------------------------------
# one call: folder → (model, params)


def _init_shapes(model, *args):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), *args))


def import_unet(path, in_channels=8, subfolder="unet", **overrides):
  """(UNet, {'params': ...}) from a diffusers UNet folder (or a pipeline folder with unet/)."""
  import jax.numpy as jnp
  from jaxdeg.models.ldm.unet import UNet
  config = load_config(path, subfolder)
  if config is None and not overrides:
    raise WeightImportError(f"{path}: no config.json; pass the UNet fields as keyword arguments")
  kwargs = {**(unet_kwargs(config, in_channels) if config else {"in_channels": in_channels}), **overrides}
  model = UNet(**kwargs)
  f = 2 ** (len(model.block_out_channels) - 1)
  target = _init_shapes(model, jnp.zeros((1, f, f, model.in_channels)), jnp.zeros((1,)),
                        jnp.zeros((1, 1, model.cross_attention_dim)))
  return model, {"params": unet_params(load_state_dict(path, subfolder), target)}


def import_vae(path, subfolder="vae", **overrides):
  """(AutoencoderKL, {'params': ...}) from a diffusers VAE folder (or a pipeline folder with vae/)."""
  import jax.numpy as jnp
  from jaxdeg.models.ldm.vae import AutoencoderKL
  config = load_config(path, subfolder)
  if config is None and not overrides:
    raise WeightImportError(f"{path}: no config.json; pass the AutoencoderKL fields as keyword arguments")
  model = AutoencoderKL(**{**(vae_kwargs(config) if config else {}), **overrides})
  f = model.downsample_factor
  target = _init_shapes(model, jnp.zeros((1, f, f, model.in_channels)))
  return model, {"params": vae_params(load_state_dict(path, subfolder), target)}
