"""An independent PyTorch reference of LPIPS (VGG, v0.1; the `lpips` package) and DISTS
(`DISTS_pytorch`), written from the official code's structure: same module tree, same state-dict
names, same layer order. It is the parity target of `jaxdeg.models.perceptual`.

The official packages cannot serve here: DISTS_pytorch's constructor downloads ImageNet VGG16
weights, and both import torchvision, whose PyPI wheels pull another torch. So the VGG16
`features` trunk is built as torchvision's `make_layers` builds it (same indices), and the random
state dicts below are written in the official file layouts.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_features():
  """torchvision.models.vgg16().features: conv(3×3, pad 1) + ReLU(inplace) pairs and 2×2 max-pools."""
  layers, cin = [], 3
  for v in VGG16_CFG:
    if v == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
      cin = v
  return nn.Sequential(*layers)


class VGG16(nn.Module):
  """Holds `features` so the state dict reads `features.<i>.weight`, as torchvision's vgg16."""

  def __init__(self):
    super().__init__()
    self.features = vgg16_features()


# ------------------------------------------------------------------------------------------------
# LPIPS (lpips/lpips.py, lpips/pretrained_networks.py, lpips/__init__.py)


def normalize_tensor(in_feat, eps=1e-10):
  norm_factor = torch.sqrt(torch.sum(in_feat ** 2, dim=1, keepdim=True))
  return in_feat / (norm_factor + eps)


class ScalingLayer(nn.Module):
  def __init__(self):
    super().__init__()
    self.register_buffer("shift", torch.Tensor([-.030, -.088, -.188])[None, :, None, None])
    self.register_buffer("scale", torch.Tensor([.458, .448, .450])[None, :, None, None])

  def forward(self, inp):
    return (inp - self.shift) / self.scale


class NetLinLayer(nn.Module):
  def __init__(self, chn_in, chn_out=1, use_dropout=True):
    super().__init__()
    layers = [nn.Dropout()] if use_dropout else []
    layers += [nn.Conv2d(chn_in, chn_out, 1, stride=1, padding=0, bias=False)]
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)


class LpipsVgg16(nn.Module):
  """pretrained_networks.vgg16: five slices of the features trunk."""

  def __init__(self, features):
    super().__init__()
    bounds = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
    self.slices = nn.ModuleList(nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in bounds)

  def forward(self, x):
    outs = []
    for s in self.slices:
      x = s(x)
      outs.append(x)
    return outs


class LPIPS(nn.Module):
  """lpips.LPIPS(net='vgg', version='0.1', lpips=True, spatial=False), in eval mode."""

  def __init__(self):
    super().__init__()
    self.scaling_layer = ScalingLayer()
    self.chns = [64, 128, 256, 512, 512]
    self.net = LpipsVgg16(vgg16_features())
    self.lins = nn.ModuleList(NetLinLayer(c) for c in self.chns)
    self.eval()

  def load_official(self, vgg_state, lin_state):
    """torchvision vgg16 state dict + the lpips package's v0.1/vgg.pth."""
    trunk = VGG16()
    trunk.load_state_dict({k: v for k, v in vgg_state.items() if k.startswith("features.")})
    for sl, (a, b) in zip(self.net.slices, ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))):
      for j, i in enumerate(range(a, b)):
        sl[j].load_state_dict(trunk.features[i].state_dict())
    for k, lin in enumerate(self.lins):
      lin.model[1].weight.data.copy_(lin_state[f"lin{k}.model.1.weight"])
    return self

  def forward(self, in0, in1, normalize=False):
    if normalize:  # [0, 1] inputs
      in0, in1 = 2 * in0 - 1, 2 * in1 - 1
    outs0, outs1 = self.net(self.scaling_layer(in0)), self.net(self.scaling_layer(in1))
    val = 0
    for kk in range(len(self.chns)):
      diff = (normalize_tensor(outs0[kk]) - normalize_tensor(outs1[kk])) ** 2
      val = val + self.lins[kk](diff).mean([2, 3], keepdim=True)
    return val


# ------------------------------------------------------------------------------------------------
# DISTS (DISTS_pytorch/DISTS_pt.py)


class L2pooling(nn.Module):
  def __init__(self, filter_size=5, stride=2, channels=None):
    super().__init__()
    self.padding = (filter_size - 2) // 2
    self.stride = stride
    self.channels = channels
    a = np.hanning(filter_size)[1:-1]
    g = torch.Tensor(a[:, None] * a[None, :])
    g = g / torch.sum(g)
    self.register_buffer("filter", g[None, None, :, :].repeat((self.channels, 1, 1, 1)))

  def forward(self, input):
    input = input ** 2
    out = F.conv2d(input, self.filter, stride=self.stride, padding=self.padding, groups=input.shape[1])
    return (out + 1e-12).sqrt()


class DISTS(nn.Module):
  def __init__(self):
    super().__init__()
    features = vgg16_features()
    pools = {4: 64, 9: 128, 16: 256, 23: 512}
    bounds = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
    self.stages = nn.ModuleList()
    for a, b in bounds:
      stage = nn.Sequential()
      for i in range(a, b):
        stage.add_module(str(i), L2pooling(channels=pools[i]) if i in pools else features[i])
      self.stages.append(stage)
    self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
    self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
    self.chns = [3, 64, 128, 256, 512, 512]
    self.alpha = nn.Parameter(torch.randn(1, sum(self.chns), 1, 1))
    self.beta = nn.Parameter(torch.randn(1, sum(self.chns), 1, 1))

  def load_official(self, vgg_state, alpha_beta):
    """torchvision vgg16 state dict + DISTS_pytorch's weights.pt."""
    for stage in self.stages:
      for name, layer in stage.named_children():
        if isinstance(layer, nn.Conv2d):
          layer.weight.data.copy_(vgg_state[f"features.{name}.weight"])
          layer.bias.data.copy_(vgg_state[f"features.{name}.bias"])
    self.alpha.data.copy_(alpha_beta["alpha"])
    self.beta.data.copy_(alpha_beta["beta"])
    return self

  def forward_once(self, x):
    h = (x - self.mean) / self.std
    feats = [x]
    for stage in self.stages:
      h = stage(h)
      feats.append(h)
    return feats

  def forward(self, x, y):
    feats0, feats1 = self.forward_once(x), self.forward_once(y)
    dist1 = dist2 = 0
    c1 = c2 = 1e-6
    w_sum = self.alpha.sum() + self.beta.sum()
    alpha = torch.split(self.alpha / w_sum, self.chns, dim=1)
    beta = torch.split(self.beta / w_sum, self.chns, dim=1)
    for k in range(len(self.chns)):
      x_mean = feats0[k].mean([2, 3], keepdim=True)
      y_mean = feats1[k].mean([2, 3], keepdim=True)
      S1 = (2 * x_mean * y_mean + c1) / (x_mean ** 2 + y_mean ** 2 + c1)
      dist1 = dist1 + (alpha[k] * S1).sum(1, keepdim=True)
      x_var = ((feats0[k] - x_mean) ** 2).mean([2, 3], keepdim=True)
      y_var = ((feats1[k] - y_mean) ** 2).mean([2, 3], keepdim=True)
      xy_cov = (feats0[k] * feats1[k]).mean([2, 3], keepdim=True) - x_mean * y_mean
      S2 = (2 * xy_cov + c2) / (x_var + y_var + c2)
      dist2 = dist2 + (beta[k] * S2).sum(1, keepdim=True)
    return 1 - (dist1 + dist2).squeeze()


# ------------------------------------------------------------------------------------------------
# random weights in the official file layouts


def random_vgg16_state(seed=0):
  """A torchvision-layout vgg16 state dict: He-normal (fan-out) kernels as torchvision initialises
  them, and small random biases (zero in torchvision) so that loading them is tested too."""
  g = torch.Generator().manual_seed(seed)
  state = {}
  for i, layer in enumerate(vgg16_features()):
    if isinstance(layer, nn.Conv2d):
      cout, cin = layer.weight.shape[:2]
      state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (cout * 9)) ** 0.5
      state[f"features.{i}.bias"] = (torch.rand(cout, generator=g) - 0.5) * 0.2
  return state


def random_lpips_lins(seed=0):
  """The lpips package's v0.1/vgg.pth layout: non-negative 1×1 head weights, U(0, 1)."""
  g = torch.Generator().manual_seed(seed)
  return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
          for k, c in enumerate((64, 128, 256, 512, 512))}


def random_dists_alpha_beta(seed=0):
  """DISTS_pytorch's weights.pt layout, drawn as its constructor initialises them: N(0.1, 0.01)."""
  g = torch.Generator().manual_seed(seed)
  return {k: 0.1 + 0.01 * torch.randn(1, 1475, 1, 1, generator=g) for k in ("alpha", "beta")}
