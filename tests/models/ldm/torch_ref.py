"""Small random diffusers models (the references for parity tests) and layout helpers."""
import numpy as np

SMALL_UNET = dict(block_out_channels=(32, 64), layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
                  norm_num_groups=8)
SMALL_VAE = dict(block_out_channels=(16, 32), layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)


def _perturb(module, seed):
  """Norm scales/biases off their 1/0 init, so the test sees them."""
  import torch
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in module.parameters():
      if p.ndim == 1:
        p.add_(0.1 * torch.randn(p.shape, generator=g))
  return module.eval()


def torch_unet(in_channels=8, seed=0):
  import torch
  from diffusers import UNet2DConditionModel
  torch.manual_seed(seed)
  return _perturb(UNet2DConditionModel(sample_size=16, in_channels=in_channels, out_channels=4, **SMALL_UNET), seed)


def torch_vae(seed=0):
  import torch
  from diffusers import AutoencoderKL
  torch.manual_seed(seed)
  return _perturb(AutoencoderKL(in_channels=3, out_channels=3, **SMALL_VAE), seed)


def nchw(a):
  import torch
  return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 3, 1, 2)))


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)
