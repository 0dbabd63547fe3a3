"""Import the official universal-degradation-model checkpoints (PyTorch,
github.com/yangwenbo99/content-degradation-disentanglement) into `jaxdeg.models.cdd`.

The official trainer saves `{'model': {'netE', 'netE_loc', 'netG', 'netCprs', 'netCprs_loc',
'netP'}, 'epoch', 'global_step'}`: one state dict per part (netE is the MoCo query encoder).
Parts map to our submodules:

    netE → global_encoder (HDEN)           netCprs     → global_compressor
    netE_loc → local_encoder (IDEN)        netCprs_loc → local_compressor
    netG → generator                       netP        → Critic (separate module)

Each part's keys are renamed by a table built from our module structure; layouts change as
conv OIHW → HWIO, transposed conv (in, out, kh, kw) → spatially flipped HWIO, linear → (in, out),
BatchNorm weight/bias → params, running mean/var → batch_stats. CompressAI's derived buffers
(`_offset`, `_quantized_cdf`, `_cdf_length`, `target`, the likelihood bound) and
`num_batches_tracked` are not parameters and are skipped. The imported model has
`official_input_scaling=True`: the official generator feeds 2x − 1 to its first conv.

Whether the official run used each compressor (`netCprs.enabled`, `netCprs_loc.enabled`) is a
training-config choice the checkpoint does not record (both parts are always saved); pass
`compress_global=False` / `compress_local=False` for a part it did not use.

The critic (netP) comes in the official strategies (`network.netP.strategy`): 'unconditioned'
(3 input channels: the image), 'conditioned' (6: clean ‖ image, at the training crop) and
'patched' (6: a key patch ‖ a patch, at a quarter of the crop; see jaxdeg/tasks/_cdd_critic.py).
Channels tell 3 from 6; which 6-channel strategy the file holds is not recorded, so it must be
named. ('qiqa' is declared by the official code but its trainer raises NotImplemented: no
checkpoint can hold one.) Needs torch to read the file; files are read with weights_only=True.
"""
import os
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.interop.checks import WeightImportError, raise_if_unfit, summary

PART_OF_SUBMODULE = {"global_encoder": "netE", "local_encoder": "netE_loc", "generator": "netG",
                     "global_compressor": "netCprs", "local_compressor": "netCprs_loc"}
# the official CombinedModel saves these five whatever its switches; netP may be left out of a release
REQUIRED_PARTS = ("netE", "netE_loc", "netG", "netCprs", "netCprs_loc")
CRITIC_STRATEGIES = {"unconditioned": 3, "conditioned": 6, "patched": 6}
# buffers that are not parameters: torch's BatchNorm step count and CompressAI's derived tables
_SKIPPED_LEAVES = {"bn": ("num_batches_tracked",),
                   "entropy": ("_offset", "_quantized_cdf", "_cdf_length", "target", "likelihood_lower_bound.bound")}


# ------------------------------------------------------------------------------------------------
# reading files


def _numpy(a):
  if hasattr(a, "detach"):
    a = a.detach().cpu().float().numpy()
  return np.asarray(a, np.float32)


def read_checkpoint(path):
  """(parts, info) of an official checkpoint file (`latest.pt`, `model_N.pt`): parts as
  `checkpoint_parts` gives them, info {'epoch', 'global_step'} where the file has them."""
  if os.path.isdir(path):
    raise WeightImportError(f"{path}: a folder, not an official checkpoint file (a jaxdeg run is a folder: "
                            "give it as a run/workdir instead)")
  if not os.path.isfile(path):
    raise WeightImportError(f"{path}: no such file")
  try:
    import torch
  except ImportError:
    raise WeightImportError(f"{path}: reading an official CDD checkpoint needs torch installed") from None
  try:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for unreadable files; its messages run over lines
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise WeightImportError(f"{path}: not a PyTorch checkpoint ({first[:200]})") from None
  info = {k: ckpt[k] for k in ("epoch", "global_step") if isinstance(ckpt, dict) and isinstance(ckpt.get(k), int)}
  return checkpoint_parts(ckpt, what=str(path)), info


def load_checkpoint(path):
  """{part name: {key: float32 ndarray}} from an official checkpoint file."""
  return read_checkpoint(path)[0]


def checkpoint_parts(ckpt, what="checkpoint"):
  """Normalise a loaded checkpoint (trainer dict or bare parts dict) to {part: {key: ndarray}}."""
  if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
    ckpt = ckpt["model"]
  if not isinstance(ckpt, dict) or not any(p in ckpt for p in (*PART_OF_SUBMODULE.values(), "netP")):
    keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise WeightImportError(f"{what}: not an official CDD checkpoint (expected parts netE, netE_loc, netG, "
                            f"netCprs, netCprs_loc, netP; found {keys})")
  parts = {}
  for part, sd in ckpt.items():
    if isinstance(sd, dict):
      # DataParallel-wrapped modules save with a 'module.' prefix
      parts[part] = {k[len("module."):] if k.startswith("module.") else k: _numpy(v)
                     for k, v in sd.items() if hasattr(v, "shape")}
  missing = [p for p in REQUIRED_PARTS if not parts.get(p)]
  if missing:
    raise WeightImportError(f"{what}: official checkpoint without its {', '.join(missing)} part(s) "
                            f"(found: {', '.join(sorted(parts)) or 'none'})")
  return parts


# ------------------------------------------------------------------------------------------------
# rename tables: (torch prefix, kind, flax path)


def _conv_block_rows(torch_prefix, flax_name):
  return [(f"{torch_prefix}.conv", "conv", (flax_name, "conv")), (f"{torch_prefix}.norm", "bn", (flax_name, "norm"))]


def hden_rows(n_long=4, n_short=6):
  rows = []
  for i in range(n_long):
    rows += _conv_block_rows(f"LPE_p.{i}", f"long_range_{i}")
  for i in range(n_short):
    rows += _conv_block_rows(f"LPE_l.{i}", f"short_range_{i}")
  return rows + [("last_mlp.0", "dense", ("mlp_in",)), ("last_mlp.2", "dense", ("mlp_out",))]


def iden_rows(n_long=4, n_short=6):
  rows = [r for r in hden_rows(n_long, n_short) if not r[0].startswith("last_mlp")]
  return rows + [(f"LPE_p.{n_long}", "convT", ("long_range_up",)),
                 ("last_mlp.0", "conv", ("tail_in",)), ("last_mlp.2", "conv", ("tail_out",))]


def _sft_rows(tp, fp):
  return [(f"{tp}.convs_gamma.0.conv2d", "conv", fp + ("gamma_in",)),
          (f"{tp}.convs_gamma.1.conv2d", "conv", fp + ("gamma_out",)),
          (f"{tp}.convs_beta.0.conv2d", "conv", fp + ("beta_in",)),
          (f"{tp}.convs_beta.1.conv2d", "conv", fp + ("beta_out",)),
          (f"{tp}.spatial_gamma.transform_map.0", "convT", fp + ("ida", "map_up")),
          (f"{tp}.spatial_gamma.transform_map.2", "conv", fp + ("ida", "map_down")),
          (f"{tp}.spatial_gamma.transform_x", "conv", fp + ("ida", "feature_down")),
          (f"{tp}.spatial_gamma.deconv", "convT", fp + ("ida", "up"))]


def generator_rows(blocks=(4, 3, 2, 3, 4)):
  rows = [("conv", "conv", ("condition_in",)), ("net.map_head.conv2d", "conv", ("condition_head",)),
          ("net.conv_first.conv2d", "conv", ("conv_first",)),
          ("net.conv_down1.conv2d", "conv", ("down1",)), ("net.conv_down2.conv2d", "conv", ("down2",)),
          ("net.conv_up2.tconv2d", "convT", ("up2",)), ("net.conv_skip2.conv2d", "conv", ("skip2",)),
          ("net.conv_up1.tconv2d", "convT", ("up1",)), ("net.conv_skip1.conv2d", "conv", ("skip1",)),
          ("net.conv_last.conv2d", "conv", ("conv_out",))]
  stages = (("blocks1", "enc1"), ("blocks2", "enc2"), ("blocks3", "mid"), ("blocks2_", "dec2"), ("blocks1_", "dec1"))
  for (tname, fname), n in zip(stages, blocks):
    for i in range(n):
      tp, fp = f"net.{tname}.{i}", (f"{fname}_{i}",)
      rows += [(f"{tp}.conv1.conv2d", "conv", fp + ("conv1",)), (f"{tp}.conv2.conv2d", "conv", fp + ("conv2",))]
      rows += _sft_rows(f"{tp}.sft1", fp + ("sft1",)) + _sft_rows(f"{tp}.sft2", fp + ("sft2",))
  return rows


def global_compressor_rows(head_blocks=2, tail_blocks=2):
  rows = [("model", "entropy", ("bottleneck",))]
  for side, n in (("head", head_blocks), ("tail", tail_blocks)):
    for i in range(n):
      rows += [(f"{side}.layers.{i}.block.0", "dense", (side, f"block{i}_in")),
               (f"{side}.layers.{i}.block.2", "dense", (side, f"block{i}_out"))]
  return rows


def local_compressor_rows():
  rows = [(f"model.Encoder.{n}", "conv", (n,)) for n in ("conv1", "conv2", "conv3")]
  rows += [(f"model.Encoder.{n}", "gdn", (n,)) for n in ("gdn1", "gdn2")]
  rows += [(f"model.Decoder.{n}", "convT", (n,)) for n in ("deconv1", "deconv2", "deconv3")]
  rows += [(f"model.Decoder.{n}", "gdn", (n,)) for n in ("igdn1", "igdn2")]
  return rows + [(f"model.bitEstimator.f{i}", "cdf", ("bit_estimator", f"f{i}")) for i in range(1, 5)]


def critic_rows():
  return [(f"main.{2 * i}", "conv", (f"conv{i}",)) for i in range(5)] + [
      ("main.10", "conv", ("conv_final",)), ("output", "dense", ("score",))]


# ------------------------------------------------------------------------------------------------
# layouts


def _leaf(kind, name, a):
  """(collection, flax leaf name, array) for torch leaf `name` of a layer of `kind`, or None to skip."""
  if name in _SKIPPED_LEAVES.get(kind, ()):
    return None
  if kind in ("conv", "convT", "dense") and name == "bias":
    return "params", "bias", a
  if kind == "conv" and name == "weight":
    return "params", "kernel", a.transpose(2, 3, 1, 0)
  if kind == "convT" and name == "weight":
    return "params", "kernel", a[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
  if kind == "dense" and name == "weight":
    return "params", "kernel", a.T
  if kind == "bn":
    return {"weight": ("params", "scale", a), "bias": ("params", "bias", a),
            "running_mean": ("batch_stats", "mean", a), "running_var": ("batch_stats", "var", a)}.get(name, False)
  if kind == "gdn" and name in ("beta", "gamma"):
    return "params", name, a
  if kind == "cdf" and name in ("h", "b", "a"):
    return "params", name, a.reshape(-1)
  if kind == "entropy":
    m = re.fullmatch(r"_(matrix|bias|factor)(\d+)|(matrices|biases|factors)\.(\d+)", name)
    if m:  # CompressAI's names, with its later ParameterList spelling accepted too
      base = m.group(1) or {"matrices": "matrix", "biases": "bias", "factors": "factor"}[m.group(3)]
      return "params", f"{base}_{m.group(2) or m.group(4)}", a
    if name == "quantiles":
      return "params", "quantiles", a
  return False  # not a leaf this kind has


def _shapes(target):
  """{collection: {path tuple: shape}} from variables (boxed, abstract or concrete)."""
  target = nn.meta.unbox(target)
  out = {}
  for col, tree in target.items():
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    out[col] = {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}
  return out


def convert_part(state_dict, rows, target, what):
  """One part's state dict → {collection: nested dict} shaped as `target` (that part's variables).

  Raises WeightImportError naming every missing, unexpected and mis-shaped key."""
  shapes = _shapes(target)
  out, unexpected, mismatched, seen = {}, [], [], set()
  by_prefix = sorted(rows, key=lambda r: -len(r[0]))  # longest prefix first: 'conv' must not claim 'conv1.…'
  for key, a in state_dict.items():
    row = next((r for r in by_prefix if key.startswith(r[0] + ".")), None)
    leaf = _leaf(row[1], key[len(row[0]) + 1:], a) if row else False
    if leaf is None:
      continue
    if leaf is False:
      unexpected.append(key)
      continue
    col, name, arr = leaf
    full = row[2] + (name,)
    want = shapes.get(col, {}).get(full)
    if want is None:
      unexpected.append(f"{key} (→ {col}/{'/'.join(full)}, which the model does not have)")
      continue
    seen.add((col, full))
    if arr.shape != want:
      mismatched.append(f"{key}: file {tuple(a.shape)} → {arr.shape}, model {col}/{'/'.join(full)} wants {want}")
      continue
    node = out.setdefault(col, {})
    for p in full[:-1]:
      node = node.setdefault(p, {})
    node[full[-1]] = np.ascontiguousarray(arr)
  missing = sorted(f"{col}/{'/'.join(p)}" for col, s in shapes.items() for p in s if (col, p) not in seen)
  raise_if_unfit(what, mismatched=mismatched, missing=missing, unexpected=unexpected)
  return out


# ------------------------------------------------------------------------------------------------
# whole model


def model_kwargs(parts):
  """`DegradationModel` fields read off the checkpoint's shapes (widths, kernel, embedding sizes)."""
  kw = {}
  e, el, g, cl = (parts.get(p, {}) for p in ("netE", "netE_loc", "netG", "netCprs_loc"))
  if "last_mlp.2.weight" in e:
    kw["global_dim"], kw["encoder_dim"] = e["last_mlp.2.weight"].shape
  if "LPE_p.0.conv.weight" in e:
    kw["encoder_kernel"] = e["LPE_p.0.conv.weight"].shape[-1]
  if "last_mlp.2.weight" in el:
    kw["local_dim"] = el["last_mlp.2.weight"].shape[0]
  else:
    kw["use_iden"] = False
  if "net.conv_first.conv2d.weight" in g:
    kw["generator_width"] = g["net.conv_first.conv2d.weight"].shape[0]
  if "conv.weight" in g:
    kw["cond_dim"] = g["conv.weight"].shape[0]
  counts = tuple(_block_count(g, stage) for stage in ("blocks1", "blocks2", "blocks3", "blocks2_", "blocks1_"))
  if any(counts):
    kw["generator_blocks"] = counts
  kw["use_ida"] = any(".spatial_gamma." in k for k in g) or not g
  if "model.Encoder.conv3.weight" in cl:
    kw["local_latent"] = cl["model.Encoder.conv3.weight"].shape[0]
  return kw


def _block_count(generator_keys, stage):
  """Residual blocks in a VUNet stage: 1 + the largest index under 'net.<stage>.'."""
  indices = {int(m.group(1)) for k in generator_keys if (m := re.match(rf"net\.{stage}\.(\d+)\.", k))}
  return max(indices) + 1 if indices else 0


def _rows_for(submodule, model):
  return {"global_encoder": hden_rows, "local_encoder": iden_rows, "global_compressor": global_compressor_rows,
          "local_compressor": local_compressor_rows,
          "generator": lambda: generator_rows(model.generator_blocks)}[submodule]()


def _abstract_variables(model, size=64):
  x = jnp.zeros((1, size, size, 3))
  return jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "noise": jax.random.key(0)}, x, x))


def convert(parts, model, target=None):
  """Official parts → variables {'params', 'batch_stats'} of `model` (a DegradationModel)."""
  target = nn.meta.unbox(target if target is not None else _abstract_variables(model))
  variables = {"params": {}, "batch_stats": {}}
  for submodule in target["params"]:
    part = PART_OF_SUBMODULE[submodule]
    if part not in parts:
      raise WeightImportError(f"checkpoint has no '{part}' part, which the model's {submodule} needs "
                              f"(found parts: {sorted(parts)})")
    sub_target = {col: tree[submodule] for col, tree in target.items() if submodule in tree}
    converted = convert_part(parts[part], _rows_for(submodule, model), sub_target, f"{part} → {submodule}")
    for col, tree in converted.items():
      variables[col][submodule] = tree
  return {col: tree for col, tree in variables.items() if tree}


class ImportedCritic(NamedTuple):
  critic: Any       # jaxdeg.models.cdd.Critic
  params: Any
  size: int         # the input side it was built for (the official `in_width`)
  strategy: str     # one of CRITIC_STRATEGIES
  in_channels: int


def netp_strategy(state_dict, strategy=None):
  """The official strategy of a netP state dict: read off its input channels, or `strategy`
  checked against them (6 channels need it named: the file does not say which)."""
  if "main.0.weight" not in state_dict:
    raise WeightImportError(f"netP: no 'main.0.weight' (found {summary(state_dict)})")
  channels = state_dict["main.0.weight"].shape[1]
  if strategy is None:
    fits = [k for k, c in CRITIC_STRATEGIES.items() if c == channels]
    if len(fits) != 1:
      raise WeightImportError(f"netP sees {channels} input channels: name its strategy "
                              f"({' or '.join(fits) or 'none fits'}); the checkpoint does not record which")
    return fits[0]
  if strategy not in CRITIC_STRATEGIES:
    raise WeightImportError(f"critic strategy {strategy!r}: must be one of {', '.join(CRITIC_STRATEGIES)}"
                            + (" (the official trainer never implemented 'qiqa')" if strategy == "qiqa" else ""))
  if CRITIC_STRATEGIES[strategy] != channels:
    raise WeightImportError(f"netP sees {channels} input channels; a {strategy!r} critic sees "
                            f"{CRITIC_STRATEGIES[strategy]}")
  return strategy


def convert_critic(state_dict, strategy=None) -> ImportedCritic:
  """Official netP state dict → the critic, its params, input size, strategy and channels."""
  from jaxdeg.models.cdd.critic import Critic
  strategy = netp_strategy(state_dict, strategy)
  width, channels = state_dict["main.0.weight"].shape[:2]
  # the official critic swaps its first three stride-2 4×4 convs for 3×3 ones on small inputs
  strided = [state_dict.get(f"main.{2 * i}.weight", np.zeros((1, 1, 4, 4))).shape[-1] == 4 for i in range(3)]
  size = 128 if strided[0] else 64 if strided[1] else 32
  critic = Critic(width)
  target = jax.eval_shape(critic.init, jax.random.key(0), jnp.zeros((1, size, size, channels)))
  params = convert_part(state_dict, critic_rows(), nn.meta.unbox(target), "netP → critic")["params"]
  return ImportedCritic(critic, params, size, strategy, channels)


def import_parts(parts, **overrides):
  """(DegradationModel, variables) of checkpoint parts; fields from their shapes, then `overrides`."""
  from jaxdeg.models.cdd.model import DegradationModel
  model = DegradationModel(**{**model_kwargs(parts), "official_input_scaling": True, **overrides})
  return model, jax.tree.map(jnp.asarray, convert(parts, model))


def import_checkpoint(path, with_critic=False, critic_strategy=None, **overrides):
  """(DegradationModel, variables) from an official checkpoint file; with `with_critic`, also
  an ImportedCritic when the file has a netP part, else None.

  Fields are read from the file's shapes; `overrides` (e.g. compress_global=False) take precedence."""
  parts = load_checkpoint(path)
  model, variables = import_parts(parts, **overrides)
  if not with_critic:
    return model, variables
  critic = convert_critic(parts["netP"], critic_strategy) if "netP" in parts else None
  return model, variables, critic


__all__ = ["read_checkpoint", "load_checkpoint", "checkpoint_parts", "netp_strategy", "ImportedCritic",
           "CRITIC_STRATEGIES", "REQUIRED_PARTS", "convert", "convert_part", "convert_critic", "import_parts",
           "import_checkpoint",
           "model_kwargs", "hden_rows", "iden_rows", "generator_rows", "global_compressor_rows",
           "local_compressor_rows", "critic_rows", "WeightImportError"]
