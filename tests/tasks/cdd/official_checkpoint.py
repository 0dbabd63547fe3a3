"""Official-layout checkpoints (random init, perturbed) of the `:tiny` cdd model, built with the
PyTorch reference modules of benchmarks/peers/torch_cdd.py and saved as the official trainer saves."""
import torch

from benchmarks.peers import torch_cdd as ref

BLOCKS = (1, 1, 1, 1, 1)  # configs/cdd_general.py:tiny


def tiny_parts(strategy="unconditioned", crop=32):
  """{part: torch module} of configs/cdd_general.py:tiny (critic width 8) with a netP of `strategy`."""
  torch.manual_seed(0)
  channels = 3 if strategy == "unconditioned" else 6
  side = crop // 4 if strategy == "patched" else crop  # the official in_width
  parts = {"netE": ref.perturb(ref.LPE(16, 16), 1), "netE_loc": ref.perturb(ref.LPEL(16, 4), 2),
           "netG": ref.perturb(ref.BasicWrapper(8, 8, 4, 16, BLOCKS), 3),
           "netCprs": ref.perturb(ref.GlobalCompressor(16), 4),
           "netCprs_loc": ref.perturb(ref.LocalCompressor(8, 4), 5),
           "netP": ref.perturb(ref.DiscriminatorLinear(channels, ndf=8, in_width=side), 6)}
  # at random init the embeddings hardly vary with the image and barely reach the generator (after
  # rounding, two references give the same embedding); scaled up, the reference steers the output
  with torch.no_grad():
    parts["netE"].last_mlp[2].weight.mul_(100.0)
    parts["netE_loc"].last_mlp[2].weight.mul_(100.0)
    parts["netG"].conv.weight.mul_(30.0)
  return parts


def save(parts, path, drop=()):
  torch.save({"model": {k: m.state_dict() for k, m in parts.items() if k not in drop}, "epoch": 3,
              "global_step": 120}, path)
  return str(path)
