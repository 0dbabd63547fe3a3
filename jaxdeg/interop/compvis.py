"""Read Stable Diffusion and GenDeg checkpoints in the original CompVis / PyTorch-Lightning layout:
one file (`.safetensors`, or a pickled `.ckpt`) holding every part of the latent diffusion model.

  model.diffusion_model.*         the UNet (input_blocks / middle_block / output_blocks)
  model_ema.diffusion_model…      its EMA copy (LitEma: the same names with the dots removed)
  first_stage_model.*             the KL autoencoder (encoder.down.i.block.j, mid.attn_1, …)
  cond_stage_model.transformer.*  the CLIP text encoder, in Hugging Face names
  stats_proj.*, cc_projection.*   GenDeg's μσ projection Linear(129 → 77) and Linear(770 → 768)

The UNet and VAE keys are renamed to diffusers' names and handed to `jaxdeg.interop.diffusers.
convert` (our modules use diffusers' names), so import is a rename, a transpose, and conv_in
widened with zeros where the model has more input channels than the file (SD-1.5 → GenDeg: 4 → 8).
The architecture is read off the tensor shapes; only the head count and the GroupNorm group count
cannot be, and default to SD-1.x's (8 and 32).

GenDeg's released generation (`run_single.py` under `model.ema_scope()`) runs the UNet with the EMA
weights; its LitEma tracks only `model` (the UNet), so stats_proj and cc_projection always come from
their trained weights. `load(use_ema=True)` does the same.

A `.ckpt` is a pickle: reading one that holds more than tensors (Lightning's stored learning
rates, hyper-parameters, callbacks) runs code from the file, so it is refused unless the caller
passes `allow_unsafe_pickle=True`. Files that hold only tensors load without it.
"""
import dataclasses
import os
import pickle
import re
from typing import Any, Optional

import numpy as np

from jaxdeg.interop import safetensors_io
from jaxdeg.interop.diffusers import WeightImportError, _init_shapes, _numpy, convert

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
CONTEXT_LAYERS = ("stats_proj", "cc_projection")
SD_SCALING_FACTOR = 0.18215

# ------------------------------------------------------------------------------------------------
# reading one file


def _first_line(e):
  text = str(e).strip().splitlines()
  return text[0] if text else type(e).__name__


def _tensors(obj, prefixes=None):
  """{name: ndarray} of the tensors in a torch checkpoint's (state) dict whose names start with one
  of `prefixes` (all by default); other values dropped."""
  if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
    obj = obj["state_dict"]
  if not isinstance(obj, dict):
    raise WeightImportError(f"expected a dict of tensors, found {type(obj).__name__}")
  out = {}
  for k, v in obj.items():
    if prefixes and not k.startswith(tuple(prefixes)):
      continue
    if hasattr(v, "detach"):
      out[k] = _numpy(v) if v.is_floating_point() else v.detach().cpu().numpy()
    elif isinstance(v, np.ndarray):
      out[k] = v.astype(np.float32) if v.dtype.kind == "f" else v
  return out


def _unpickle(path, allow_unsafe_pickle, flag):
  try:
    import torch
  except ImportError:
    raise WeightImportError(f"{path}: reading a .ckpt needs torch; install torch or convert the file to "
                            f".safetensors") from None

  def load(weights_only):
    try:  # memory-mapped: only the tensors asked for are read from disk
      return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as e:
      if "mmap" not in str(e):
        raise
      return torch.load(path, map_location="cpu", weights_only=weights_only)  # a pre-zip torch file

  try:
    return load(True)
  except Exception as e:  # noqa: BLE001  (torch raises many types)
    restricted = isinstance(e, pickle.UnpicklingError) or "weights only" in str(e).lower()
    if not restricted:
      raise WeightImportError(f"{path}: cannot read as a torch checkpoint: {_first_line(e)}") from None
    if not allow_unsafe_pickle:
      raise WeightImportError(
          f"{path}: this .ckpt pickles Python objects besides tensors (as Lightning checkpoints do), and "
          f"unpickling it runs code stored in the file; pass {flag} if you trust where it came from, or "
          f"convert it to .safetensors") from None
  try:
    return load(False)
  except Exception as e:  # noqa: BLE001
    raise WeightImportError(f"{path}: cannot read as a torch checkpoint: {_first_line(e)}") from None


def read_state_dict(path, *, allow_unsafe_pickle=False, flag="allow_unsafe_pickle=True", prefixes=None):
  """{key: ndarray} of a single-file checkpoint (floats as float32), only keys starting with one of
  `prefixes` if given. `flag` is how the caller's user opts in to full unpickling, for the error
  message."""
  if os.path.isdir(path):
    raise WeightImportError(f"{path}: a folder (a diffusers model?); expected one checkpoint file "
                            f"(.ckpt or .safetensors) in the CompVis layout")
  if not os.path.isfile(path):
    raise WeightImportError(f"{path}: no such file")
  if path.endswith(".safetensors"):
    try:
      sd = safetensors_io.load(path)
    except (ValueError, KeyError, OSError) as e:
      raise WeightImportError(f"{path}: cannot read weights: {e}") from None
    return {k: v for k, v in sd.items() if not prefixes or k.startswith(tuple(prefixes))}
  try:
    return _tensors(_unpickle(path, allow_unsafe_pickle, flag), prefixes)
  except WeightImportError as e:
    msg = str(e)
    raise WeightImportError(msg if msg.startswith(path) else f"{path}: {msg}") from None


def _strip(state_dict, prefix):
  return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


# ------------------------------------------------------------------------------------------------
# the UNet: CompVis names → diffusers names

_RESNET = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
           ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."))


def _resnet(rest):
  for old, new in _RESNET:
    if rest.startswith(old):
      return new + rest[len(old):]
  return None


def _join(prefix, rest):
  return None if rest is None else prefix + rest


def unet_key(key, per_level):
  """diffusers name of a CompVis UNet key (without 'model.diffusion_model.'), or None.
  `per_level` = layers_per_block + 1: the input (output) blocks of one resolution level."""
  parts = key.split(".")
  head = parts[0]
  if head == "time_embed" and parts[1] in ("0", "2"):
    return f"time_embedding.linear_{1 if parts[1] == '0' else 2}." + ".".join(parts[2:])
  if head == "out" and parts[1] in ("0", "2"):
    return ("conv_norm_out." if parts[1] == "0" else "conv_out.") + ".".join(parts[2:])
  if len(parts) < 4 or not parts[1].isdigit():
    return None
  i, sub, rest = int(parts[1]), parts[2], ".".join(parts[3:])
  if head == "input_blocks":
    if i == 0:
      return "conv_in." + rest if sub == "0" else None
    level, j = divmod(i - 1, per_level)
    if j == per_level - 1:  # the level's stride-2 conv: input_blocks.i.0.op
      return f"down_blocks.{level}.downsamplers.0.conv." + rest[len("op."):] if rest.startswith("op.") else None
    if sub == "0":
      return _join(f"down_blocks.{level}.resnets.{j}.", _resnet(rest))
    return f"down_blocks.{level}.attentions.{j}." + rest if sub == "1" else None
  if head == "middle_block":
    # here parts[1] is the module and parts[2:] its tensor
    rest = ".".join(parts[2:])
    if parts[1] == "1":
      return "mid_block.attentions.0." + rest
    return _join(f"mid_block.resnets.{0 if parts[1] == '0' else 1}.", _resnet(rest)) if parts[1] in ("0", "2") else None
  if head == "output_blocks":
    level, j = divmod(i, per_level)
    if sub == "0":
      return _join(f"up_blocks.{level}.resnets.{j}.", _resnet(rest))
    if rest.startswith("conv."):  # the level's upsampler: after the resnet, or after its attention
      return f"up_blocks.{level}.upsamplers.0.conv." + rest[len("conv."):]
    return f"up_blocks.{level}.attentions.{j}." + rest if sub == "1" else None
  return None


def _block_indices(keys, head):
  return sorted({int(k.split(".")[1]) for k in keys if k.startswith(head + ".")})


def _per_level(unet_sd):
  """layers_per_block + 1, from where the first downsampler sits (or the block count)."""
  keys = list(unet_sd)
  ops = [i for i in _block_indices(keys, "input_blocks") if f"input_blocks.{i}.0.op.weight" in unet_sd]
  if ops:
    return ops[0]
  return len(_block_indices(keys, "input_blocks"))


def unet_kwargs(unet_sd, num_heads=8, norm_num_groups=32):
  """`jaxdeg.models.ldm.UNet` fields read off a CompVis UNet state dict (keys without the
  'model.diffusion_model.' prefix). Heads and groups are not in the weights: SD-1.x's by default."""
  try:
    per_level = _per_level(unet_sd)
    levels = len(_block_indices(unet_sd, "output_blocks")) // per_level
    first = [1 + level * per_level for level in range(levels)]
    to_k = [v for k, v in unet_sd.items() if k.endswith("attn2.to_k.weight")]
    depth = {int(m.group(1)) for k in unet_sd for m in [re.match(r"middle_block\.1\.transformer_blocks\.(\d+)\.", k)] if m}
    return dict(
        in_channels=int(unet_sd["input_blocks.0.0.weight"].shape[1]),
        out_channels=int(unet_sd["out.2.weight"].shape[0]),
        block_out_channels=tuple(int(unet_sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0]) for i in first),
        layers_per_block=per_level - 1,
        attention_levels=tuple(any(k.startswith(f"input_blocks.{i}.1.") for k in unet_sd) for i in first),
        num_heads=num_heads, cross_attention_dim=int(to_k[0].shape[1]) if to_k else 768,
        norm_num_groups=norm_num_groups, transformer_layers=max(depth) + 1 if depth else 1,
        use_linear_projection=unet_sd.get("middle_block.1.proj_in.weight", np.zeros((1, 1, 1, 1))).ndim == 2)
  except (KeyError, IndexError, ValueError, ZeroDivisionError) as e:
    raise WeightImportError(f"not a CompVis SD-1.x UNet: cannot read its layout ({type(e).__name__}: {e})") from None


def unet_to_diffusers(unet_sd, per_level=None):
  """CompVis UNet state dict (no prefix) → diffusers UNet2DConditionModel names. Keys that have no
  diffusers name are kept as they are (and reported as unexpected by `convert`)."""
  per_level = per_level or _per_level(unet_sd)
  return {(unet_key(k, per_level) or k): v for k, v in unet_sd.items()}


def ema_unet(state_dict):
  """The UNet's EMA weights under the UNet's own names (no prefix), or None when the file has none.
  LitEma stores 'model.diffusion_model.a.b' as 'model_ema.diffusion_modelab'."""
  names = [k for k in state_dict if k.startswith(UNET_PREFIX)]
  flat = {k: EMA_PREFIX + "".join(k.split(".")[1:]) for k in names}
  present = [k for k in names if flat[k] in state_dict]
  if not present:
    return None
  if len(present) != len(names):
    missing = [flat[k] for k in names if flat[k] not in state_dict]
    raise WeightImportError(f"the EMA copy is incomplete: {len(missing)} of {len(names)} UNet tensors have no "
                            f"EMA entry (e.g. {missing[0]}); load with use_ema=False")
  return {k[len(UNET_PREFIX):]: state_dict[flat[k]] for k in names}


# ------------------------------------------------------------------------------------------------
# the VAE: CompVis names → diffusers names

_VAE_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def vae_key(key, levels):
  """diffusers name of a CompVis autoencoder key (without 'first_stage_model.'), or None."""
  parts = key.split(".")
  if parts[0] in ("quant_conv", "post_quant_conv"):
    return key
  if parts[0] not in ("encoder", "decoder") or len(parts) < 3:
    return None
  side, name = parts[0], parts[1]
  if name in ("conv_in", "conv_out"):
    return key
  if name == "norm_out":
    return f"{side}.conv_norm_out." + ".".join(parts[2:])
  if name == "mid":
    block, rest = parts[2], ".".join(parts[3:])
    if block in ("block_1", "block_2"):
      return f"{side}.mid_block.resnets.{int(block[-1]) - 1}." + rest.replace("nin_shortcut.", "conv_shortcut.")
    if block == "attn_1" and parts[3] in _VAE_ATTN:
      return f"{side}.mid_block.attentions.0.{_VAE_ATTN[parts[3]]}." + ".".join(parts[4:])
    return None
  if name in ("down", "up") and parts[2].isdigit() and len(parts) >= 5:
    i = int(parts[2])
    ours = i if side == "encoder" else levels - 1 - i  # the decoder's up.0 is its last level
    blocks = "down_blocks" if side == "encoder" else "up_blocks"
    if parts[3] == "block" and parts[4].isdigit():
      rest = ".".join(parts[5:]).replace("nin_shortcut.", "conv_shortcut.")
      return f"{side}.{blocks}.{ours}.resnets.{parts[4]}." + rest
    if parts[3] in ("downsample", "upsample"):
      kind = "downsamplers" if parts[3] == "downsample" else "upsamplers"
      return f"{side}.{blocks}.{ours}.{kind}.0." + ".".join(parts[4:])
  return None


def _vae_levels(vae_sd):
  return len({k.split(".")[2] for k in vae_sd if k.startswith("encoder.down.")})


def vae_kwargs(vae_sd, norm_num_groups=32, scaling_factor=SD_SCALING_FACTOR):
  """`jaxdeg.models.ldm.AutoencoderKL` fields read off a CompVis autoencoder state dict."""
  try:
    levels = _vae_levels(vae_sd)
    return dict(
        in_channels=int(vae_sd["encoder.conv_in.weight"].shape[1]),
        out_channels=int(vae_sd["decoder.conv_out.weight"].shape[0]),
        block_out_channels=tuple(int(vae_sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in range(levels)),
        layers_per_block=len({k.split(".")[4] for k in vae_sd if k.startswith("encoder.down.0.block.")}),
        latent_channels=int(vae_sd["post_quant_conv.weight"].shape[0]), norm_num_groups=norm_num_groups,
        scaling_factor=scaling_factor, mid_attention="encoder.mid.attn_1.q.weight" in vae_sd)
  except (KeyError, IndexError) as e:
    raise WeightImportError(f"not a CompVis KL autoencoder: cannot read its layout (missing {e})") from None


def vae_to_diffusers(vae_sd):
  """CompVis autoencoder state dict (no prefix) → diffusers AutoencoderKL names; the training
  loss's tensors (loss.*) are dropped, unknown keys kept for `convert` to report."""
  levels = _vae_levels(vae_sd)
  return {(vae_key(k, levels) or k): v for k, v in vae_sd.items() if not k.startswith("loss.")}


# ------------------------------------------------------------------------------------------------
# GenDeg's context projections and the text encoder


def context_params(state_dict):
  """GenDeg's stats_proj and cc_projection as `DegradationContext` params (flax layout), or None
  for files without them (SD-1.5)."""
  if not all(f"{n}.weight" in state_dict for n in CONTEXT_LAYERS):
    return None
  return {n: {"kernel": np.asarray(state_dict[f"{n}.weight"], np.float32).T,
              "bias": np.asarray(state_dict[f"{n}.bias"], np.float32)} for n in CONTEXT_LAYERS}


def text_encoder_state_dict(state_dict):
  """The CLIP text encoder's tensors with Hugging Face names (the 'cond_stage_model.transformer.'
  prefix stripped), for `jaxdeg.interop.clip_text.text_encoder_params`; {} when absent."""
  return _strip(state_dict, TEXT_PREFIX)


# ------------------------------------------------------------------------------------------------
# one call: file → models and params


@dataclasses.dataclass
class Weights:
  """What a CompVis checkpoint holds, imported. `context` is None for files without GenDeg's
  projections; `text` holds the CLIP tensors by Hugging Face names ({} when absent)."""
  path: str
  unet: Any
  unet_params: dict
  vae: Any
  vae_params: dict
  context: Optional[dict]
  text: dict
  used_ema: bool
  scaling_factor: float


def unet_params(state_dict, model, *, use_ema=True, what=None):
  """UNet params for `model` from a full CompVis state dict (EMA weights when present and asked
  for); returns (params, used_ema)."""
  import jax.numpy as jnp
  unet_sd = ema_unet(state_dict) if use_ema else None
  used_ema = unet_sd is not None
  if unet_sd is None:
    unet_sd = _strip(state_dict, UNET_PREFIX)
  if not unet_sd:
    raise WeightImportError(f"{what or 'checkpoint'}: no UNet tensors ({UNET_PREFIX}*); is this a CompVis-layout "
                            f"Stable Diffusion checkpoint?")
  f = 2 ** (len(model.block_out_channels) - 1)
  target = _init_shapes(model, jnp.zeros((1, f, f, model.in_channels)), jnp.zeros((1,)),
                        jnp.zeros((1, 1, model.cross_attention_dim)))
  return convert(unet_to_diffusers(unet_sd), target, what=f"{what}: UNet" if what else "UNet"), used_ema


def vae_params(state_dict, model, *, what=None):
  """AutoencoderKL params for `model` from a full CompVis state dict."""
  import jax.numpy as jnp
  vae_sd = _strip(state_dict, VAE_PREFIX)
  if not vae_sd:
    raise WeightImportError(f"{what or 'checkpoint'}: no autoencoder tensors ({VAE_PREFIX}*)")
  f = model.downsample_factor
  target = _init_shapes(model, jnp.zeros((1, f, f, model.in_channels)))
  return convert(vae_to_diffusers(vae_sd), target, what=f"{what}: VAE" if what else "VAE", expand_input=())


def scaling_factor(state_dict):
  """The latent scale the file was trained with (a buffer in some files), else SD's 0.18215."""
  s = state_dict.get("scale_factor")
  return float(np.asarray(s).reshape(())) if s is not None else SD_SCALING_FACTOR


def load(path, *, allow_unsafe_pickle=False, flag="allow_unsafe_pickle=True", use_ema=True, in_channels=None,
         num_heads=8, norm_num_groups=32, dtype=None, state_dict=None):
  """A CompVis single-file checkpoint (SD-1.x or GenDeg) as jaxdeg models and params.

  `in_channels`: the UNet's input width (None: the file's; 8 widens SD-1.5's conv_in with zeros).
  `dtype`: the modules' compute dtype (parameters stay float32). `state_dict`: an already read
  file (then `path` only names it in messages)."""
  import jax.numpy as jnp
  from jaxdeg.models.ldm import AutoencoderKL, UNet
  sd = state_dict if state_dict is not None else read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle,
                                                                  flag=flag)
  dtype = dtype or jnp.float32
  unet_sd = _strip(sd, UNET_PREFIX)
  if not unet_sd:
    hint = " (a diffusers state dict: use jaxdeg.interop.diffusers)" if any(k.startswith("down_blocks.") for k in sd) else ""
    raise WeightImportError(f"{path}: no UNet tensors ({UNET_PREFIX}*) in the file{hint}")
  kw = unet_kwargs(unet_sd, num_heads, norm_num_groups)
  if in_channels:
    kw["in_channels"] = in_channels
  unet = UNet(**kw, dtype=dtype)
  uparams, used_ema = unet_params(sd, unet, use_ema=use_ema, what=path)
  vae_sd = _strip(sd, VAE_PREFIX)
  scale = scaling_factor(sd)
  vae = AutoencoderKL(**vae_kwargs(vae_sd, norm_num_groups, scale), dtype=dtype)
  return Weights(path=path, unet=unet, unet_params=uparams, vae=vae, vae_params=vae_params(sd, vae, what=path),
                 context=context_params(sd), text=text_encoder_state_dict(sd), used_ema=used_ema,
                 scaling_factor=scale)


# ------------------------------------------------------------------------------------------------
# GenDeg's structure corrector: a basicsr NAFNet checkpoint ({'state_dict': ...})

_NAFNET_RENAMES = ((r"^encoders\.(\d+)\.(\d+)\.", r"enc\1_\2."), (r"^decoders\.(\d+)\.(\d+)\.", r"dec\1_\2."),
                   (r"^middle_blks\.(\d+)\.", r"middle_\1."), (r"^downs\.(\d+)\.", r"down\1."),
                   (r"^ups\.(\d+)\.0\.", r"up\1."), (r"\.sca\.1\.", ".sca."))


def nafnet_kwargs(state_dict):
  """`jaxdeg.models.restore.NAFNet` sizes read off an official NAFNet state dict."""
  def blocks(prefix, i=None):
    head = f"{prefix}.{i}." if i is not None else f"{prefix}."
    return len({k[len(head):].split(".")[0] for k in state_dict if k.startswith(head)})
  try:
    intro, ending = state_dict["intro.weight"], state_dict["ending.weight"]
  except KeyError as e:
    raise WeightImportError(f"not a NAFNet state dict: no {e.args[0]!r}") from None
  return dict(width=int(intro.shape[0]), in_channels=int(intro.shape[1]), out_channels=int(ending.shape[0]),
              enc_blocks=tuple(blocks("encoders", i) for i in range(blocks("encoders"))),
              middle_blocks=blocks("middle_blks"),
              dec_blocks=tuple(blocks("decoders", i) for i in range(blocks("decoders"))))


def nafnet_params(state_dict, model, what="structure corrector"):
  """Official NAFNet state dict (basicsr names) → params of `jaxdeg.models.restore.NAFNet` `model`."""
  import jax.numpy as jnp
  renamed = {}
  for k, v in state_dict.items():
    for pattern, repl in _NAFNET_RENAMES:
      k = re.sub(pattern, repl, k)
    if k.endswith((".beta", ".gamma")):  # (1, C, 1, 1) scales
      v = np.reshape(v, (-1,))
    renamed[k] = v
  target = _init_shapes(model, jnp.zeros((1, 16, 16, model.in_channels)))
  return convert(renamed, target, what=what, expand_input=())
