"""An independent PyTorch reference of the official universal degradation model, written from
the official code's structure: same module tree, same state-dict names, same layer order. It is
the parity target of `jaxdeg.interop.cdd_torch`.

One addition for testing: the generator's IDA-SFT layers take their noise channel z from
`NoiseFeed` (a queue of tensors, consumed in call order) when it holds any, else from
torch.randn as the official code does. The JAX generator sows every z it draws, so a test feeds
the same noise to both. And one for training (benchmarks/bench_cdd.py): `use_training_noise`
makes the compressors add U(−½, ½) noise instead of rounding, as they do while training.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

act_lrelu = nn.LeakyReLU()
act_relu = nn.ReLU()


# ------------------------------------------------------------------------------------------------
# encoders (official model/common.py Conv2dBlock, model/blindsr.py LPE, model/blindsrlocal.py LPEL)


class Conv2dBlock(nn.Module):
  def __init__(self, cin, cout, k, stride=1, padding=0):
    super().__init__()
    self.pad = nn.ZeroPad2d(padding)
    self.norm = nn.BatchNorm2d(cout)
    self.activation = nn.LeakyReLU(0.2)
    self.conv = nn.Conv2d(cin, cout, k, stride, bias=True)

  def forward(self, x):
    return self.activation(self.norm(self.conv(self.pad(x))))


def _short_range(dim):
  return nn.Sequential(
      Conv2dBlock(3, dim // 4, 3, 1, 1), Conv2dBlock(dim // 4, dim // 4, 1, 1, 0),
      Conv2dBlock(dim // 4, dim // 2, 3, 2, 1), Conv2dBlock(dim // 2, dim // 2, 1, 1, 0),
      Conv2dBlock(dim // 2, dim, 3, 1, 1), Conv2dBlock(dim, dim, 1, 1, 0))


class LPE(nn.Module):
  def __init__(self, dim=256, out_dim=256, k=3):
    super().__init__()
    self.LPE_p = nn.Sequential(
        Conv2dBlock(3, dim // 4, k, (k - 1) // 2, 0), Conv2dBlock(dim // 4, dim // 4, 3, 1, 1),
        Conv2dBlock(dim // 4, dim // 2, 3, 1, 1), Conv2dBlock(dim // 2, dim, 3, 1, 1))
    self.LPE_l = _short_range(dim)
    self.avg = nn.AdaptiveAvgPool2d(1)
    self.last_mlp = nn.Sequential(nn.Linear(dim * 2, dim), nn.LeakyReLU(0.1), nn.Linear(dim, out_dim))

  def forward(self, x):
    fea = torch.cat((self.avg(self.LPE_p(x)).flatten(1), self.avg(self.LPE_l(x)).flatten(1)), dim=1)
    out = self.last_mlp(fea)
    return out, out


class LPEL(nn.Module):
  def __init__(self, dim=256, out_dim=4, k=3):
    super().__init__()
    s = (k - 1) // 2
    self.LPE_p = nn.Sequential(
        Conv2dBlock(3, dim // 4, k, s, s // 2), Conv2dBlock(dim // 4, dim // 4, 3, 1, 1),
        Conv2dBlock(dim // 4, dim // 2, 3, 1, 1), Conv2dBlock(dim // 2, dim // 2, 3, 1, 1),
        nn.ConvTranspose2d(dim // 2, dim, k, stride=s, padding=0), nn.AvgPool2d(kernel_size=2))
    self.LPE_l = _short_range(dim)
    self.last_mlp = nn.Sequential(nn.Conv2d(dim * 2, dim, 1), nn.LeakyReLU(0.1), nn.Conv2d(dim, out_dim, 1),
                                  nn.Sigmoid())

  def forward(self, x):
    x_p, x_l = self.LPE_p(x), self.LPE_l(x)
    x_p = x_p[:, :, :x_l.shape[-2], :x_l.shape[-1]]
    out = self.last_mlp(torch.cat((x_p, x_l), dim=1))
    return out, out


# ------------------------------------------------------------------------------------------------
# generator (official model/modules.py, model/blindsrlocal.py IDADepthwiseConv, model/vunet_conv.py)


class NoiseFeed:
  """Noise tensors to hand out in call order; empty → fresh torch.randn."""

  def __init__(self):
    self.queue = []

  def draw(self, shape):
    return self.queue.pop(0) if self.queue else torch.randn(shape)


class Conv2d(nn.Module):
  """Pre-activation conv without bias (the official wrapper's padding rule)."""

  def __init__(self, cin, cout, k, stride=1, activation=act_relu):
    super().__init__()
    self.activation = activation
    padding = ((stride - 1) + (k - 1)) // 2
    if stride == 2 and k % stride == 0:
      padding = k // 2 - 1
    self.conv2d = nn.Conv2d(cin, cout, k, stride, padding, bias=False)

  def forward(self, x):
    return self.conv2d(self.activation(x) if self.activation is not None else x)


class ConvTranspose2d(nn.Module):
  def __init__(self, cin, cout, k, stride=2, activation=act_relu):
    super().__init__()
    self.activation = activation
    self.tconv2d = nn.ConvTranspose2d(cin, cout, k, stride, padding=(k - stride) // 2, bias=False)

  def forward(self, x):
    return self.tconv2d(self.activation(x) if self.activation is not None else x)


class IDADepthwiseConv(nn.Module):
  def __init__(self, cin_x, cin_map, cmid, cout):
    super().__init__()
    self.transform_map = nn.Sequential(
        nn.ConvTranspose2d(cin_map, cmid, 2, stride=2, bias=False), nn.LeakyReLU(0.1),
        nn.Conv2d(cmid, cmid, 3, stride=2, padding=1, bias=False))
    self.transform_x = nn.Conv2d(cin_x, cmid, 3, stride=2, padding=1, bias=False)
    self.deconv = nn.ConvTranspose2d(cmid, cout, 2, stride=2)

  def forward(self, x, dmap):
    return self.deconv(self.transform_x(x) * self.transform_map(dmap))


class SFTLayer(nn.Module):
  def __init__(self, cond_dim, n, activation, feed):
    super().__init__()
    reduce_dim = (cond_dim + n) // 4
    self.feed = feed
    self.convs_gamma = nn.ModuleList([Conv2d(cond_dim, reduce_dim, 1, activation=None),
                                      Conv2d(reduce_dim, n, 1, activation=activation)])
    self.convs_beta = nn.ModuleList([Conv2d(cond_dim + 1, reduce_dim, 1, activation=None),
                                     Conv2d(reduce_dim, n, 1, activation=activation)])
    self.spatial_gamma = IDADepthwiseConv(n, cond_dim, (n + cond_dim) // 2, n)

  def forward(self, x, cond):
    b, _, h, w = x.shape
    cond_sm = cond if cond.shape[-2:] == (h // 2, w // 2) else F.interpolate(
        cond, size=(h // 2, w // 2), mode="bilinear", align_corners=True)
    if cond.shape[-2:] != (h, w):
      cond = F.interpolate(cond, size=(h, w), mode="bilinear", align_corners=True)
    gamma = cond
    for conv in self.convs_gamma:
      gamma = conv(gamma)
    beta = torch.cat((cond, self.feed.draw((b, 1, h, w))), dim=1)
    for conv in self.convs_beta:
      beta = conv(beta)
    return x * (1 + gamma) + beta + self.spatial_gamma(x, cond_sm)


class SFTResBlock(nn.Module):
  def __init__(self, n, cond_dim, activation, feed):
    super().__init__()
    self.sft1 = SFTLayer(cond_dim, n, activation, feed)
    self.conv1 = Conv2d(n, n, 3, activation=activation)
    self.sft2 = SFTLayer(cond_dim, n, activation, feed)
    self.conv2 = Conv2d(n, n, 3, activation=activation)

  def forward(self, x, cond):
    return x + self.conv2(self.sft2(self.conv1(self.sft1(x, cond)), cond))


class VUNet(nn.Module):
  """`blocks`: residual blocks per stage; the official model has (4, 3, 2, 3, 4) (tests shrink it)."""

  def __init__(self, filters=64, cond_dim=8, feed=None, blocks=(4, 3, 2, 3, 4)):
    super().__init__()
    k1, k2, k3 = filters, filters * 2, filters * 4
    n1, n2, n3, n2_, n1_ = blocks
    block = lambda n, act=act_lrelu: SFTResBlock(n, cond_dim, act, feed)
    self.map_head = Conv2d(cond_dim, cond_dim, 3)
    self.conv_first = Conv2d(3, k1, 3, activation=None)
    self.blocks1 = nn.ModuleList([block(k1) for _ in range(n1)])
    self.conv_down1 = Conv2d(k1, k2, 4, stride=2, activation=None)
    self.blocks2 = nn.ModuleList([block(k2) for _ in range(n2)])
    self.conv_down2 = Conv2d(k2, k3, 4, stride=2, activation=None)
    self.blocks3 = nn.ModuleList([block(k3) for _ in range(n3)])
    self.conv_up2 = ConvTranspose2d(k3, k2, 4, stride=2, activation=None)
    self.conv_skip2 = Conv2d(k2 * 2, k2, 3, activation=act_lrelu)
    self.blocks2_ = nn.ModuleList([block(k2) for _ in range(n2_)])
    self.conv_up1 = ConvTranspose2d(k2, k1, 4, stride=2, activation=None)
    self.conv_skip1 = Conv2d(k1 * 2, k1, 3, activation=act_lrelu)
    # the last block of the top decoder stage uses ReLU (the official "+1" block)
    self.blocks1_ = nn.ModuleList([block(k1) for _ in range(n1_ - 1)] + [block(k1, act_relu)])
    self.conv_last = Conv2d(k1, 3, 1, activation=act_lrelu)

  def forward(self, clean, cond):
    y = self.conv_first(clean * 2 - 1)
    cond = self.map_head(cond)
    for b in self.blocks1:
      y = b(y, cond)
    skip1 = y
    y = self.conv_down1(y)
    for b in self.blocks2:
      y = b(y, cond)
    skip2 = y
    y = self.conv_down2(y)
    for b in self.blocks3:
      y = b(y, cond)
    y = self.conv_skip2(torch.cat((self.conv_up2(y), skip2), dim=1))
    for b in self.blocks2_:
      y = b(y, cond)
    y = self.conv_skip1(torch.cat((self.conv_up1(y), skip1), dim=1))
    for b in self.blocks1_:
      y = b(y, cond)
    return self.conv_last(y)


class BasicWrapper(nn.Module):
  def __init__(self, n_filter=64, proj_dim_noise=8, loc_emb_dim=4, emb_dim=256, blocks=(4, 3, 2, 3, 4)):
    super().__init__()
    self.feed = NoiseFeed()
    self.net = VUNet(n_filter, proj_dim_noise, self.feed, blocks)
    self.conv = nn.Conv2d(loc_emb_dim + emb_dim, proj_dim_noise, 3, padding=1)

  def forward(self, x, k_v, dmap):
    k_v = k_v[:, :, None, None].expand(-1, -1, dmap.shape[2], dmap.shape[3])
    return self.net(x, self.conv(torch.cat((dmap, k_v), dim=1)))


# ------------------------------------------------------------------------------------------------
# compressors (CompressAI EntropyBottleneck in eval, CompressorHeadMLP, iclr_17 ImageCompressor)


class LowerBound(nn.Module):
  def __init__(self, bound):
    super().__init__()
    self.register_buffer("bound", torch.Tensor([float(bound)]))

  def forward(self, x):
    return torch.max(x, self.bound)


class EntropyBottleneck(nn.Module):
  def __init__(self, channels, filters=(3, 3, 3, 3), init_scale=10.0, tail_mass=1e-9):
    super().__init__()
    self.filters = filters
    dims = (1,) + filters + (1,)
    scale = init_scale ** (1 / (len(filters) + 1))
    for i in range(len(filters) + 1):
      self.register_parameter(f"_matrix{i}", nn.Parameter(
          torch.full((channels, dims[i + 1], dims[i]), float(np.log(np.expm1(1 / scale / dims[i + 1]))))))
      self.register_parameter(f"_bias{i}", nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
      if i < len(filters):
        self.register_parameter(f"_factor{i}", nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
    self.quantiles = nn.Parameter(torch.Tensor([-init_scale, 0, init_scale]).repeat(channels, 1, 1))
    t = np.log(2 / tail_mass - 1)
    self.register_buffer("target", torch.Tensor([-t, 0, t]))
    self.likelihood_lower_bound = LowerBound(1e-9)
    self.register_buffer("_offset", torch.IntTensor())
    self.register_buffer("_quantized_cdf", torch.IntTensor())
    self.register_buffer("_cdf_length", torch.IntTensor())

  def _logits_cumulative(self, x):
    for i in range(len(self.filters) + 1):
      x = torch.matmul(F.softplus(getattr(self, f"_matrix{i}")), x) + getattr(self, f"_bias{i}")
      if i < len(self.filters):
        x = x + torch.tanh(getattr(self, f"_factor{i}")) * torch.tanh(x)
    return x

  def loss(self):
    return torch.abs(self._logits_cumulative(self.quantiles) - self.target).sum()

  training_noise = False

  def forward(self, x):  # round around the medians (or training noise, see use_training_noise)
    values = x.t().reshape(x.shape[1], 1, -1)
    med = self.quantiles[:, :, 1:2]
    values = values + torch.rand_like(values) - 0.5 if self.training_noise else torch.round(values - med) + med
    lower, upper = self._logits_cumulative(values - 0.5), self._logits_cumulative(values + 0.5)
    sign = -torch.sign(lower + upper)
    lik = self.likelihood_lower_bound(torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)))
    return values.reshape(x.shape[1], -1).t(), lik.reshape(x.shape[1], -1).t()


class MLPResidualBlock(nn.Module):
  def __init__(self, channels, mid):
    super().__init__()
    self.block = nn.Sequential(nn.Linear(channels, mid), nn.ReLU(), nn.Linear(mid, channels))

  def forward(self, x):
    return x + self.block(x)


class CompressorHeadMLP(nn.Module):
  def __init__(self, channels, layers=2):
    super().__init__()
    self.layers = nn.Sequential(*[MLPResidualBlock(channels, channels // 4) for _ in range(layers)])

  def forward(self, x):
    return self.layers(x)


class GlobalCompressor(nn.Module):
  """The official CompressorWraper with an EntropyBottleneck, head and tail."""

  def __init__(self, channels=256):
    super().__init__()
    self.model = EntropyBottleneck(channels)
    self.head = CompressorHeadMLP(channels)
    self.tail = CompressorHeadMLP(channels)

  def forward(self, e):
    e, lik = self.model(self.head(e))
    return self.tail(e), lik, torch.log(lik).sum(dim=1) / (-math.log(2))


class GDN(nn.Module):
  def __init__(self, ch, inverse=False, beta_min=1e-6, gamma_init=0.1, reparam_offset=2 ** -18):
    super().__init__()
    self.inverse = inverse
    self.pedestal = reparam_offset ** 2
    self.beta_bound = (beta_min + self.pedestal) ** 0.5
    self.gamma_bound = reparam_offset
    self.beta = nn.Parameter(torch.sqrt(torch.ones(ch) + self.pedestal))
    self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(ch) + self.pedestal))

  def forward(self, x):
    ch = x.shape[1]
    beta = torch.clamp(self.beta, min=self.beta_bound) ** 2 - self.pedestal
    gamma = (torch.clamp(self.gamma, min=self.gamma_bound) ** 2 - self.pedestal).view(ch, ch, 1, 1)
    norm = torch.sqrt(F.conv2d(x ** 2, gamma, beta))
    return x * norm if self.inverse else x / norm


class Analysis(nn.Module):
  def __init__(self, n, cin):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, n, 9, stride=4, padding=4)
    self.gdn1 = GDN(n)
    self.conv2 = nn.Conv2d(n, n, 5, stride=2, padding=2)
    self.gdn2 = GDN(n)
    self.conv3 = nn.Conv2d(n, n, 5, stride=2, padding=2, bias=False)

  def forward(self, x):
    return self.conv3(self.gdn2(self.conv2(self.gdn1(self.conv1(x)))))


class Synthesis(nn.Module):
  def __init__(self, n, cin):
    super().__init__()
    self.deconv1 = nn.ConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1)
    self.igdn1 = GDN(n, inverse=True)
    self.deconv2 = nn.ConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1)
    self.igdn2 = GDN(n, inverse=True)
    self.deconv3 = nn.ConvTranspose2d(n, cin, 9, stride=4, padding=4, output_padding=3)

  def forward(self, x):
    return self.deconv3(self.igdn2(self.deconv2(self.igdn1(self.deconv1(x)))))


class Bitparm(nn.Module):
  def __init__(self, channel, final=False):
    super().__init__()
    self.final = final
    self.h = nn.Parameter(torch.randn(1, channel, 1, 1) * 0.01)
    self.b = nn.Parameter(torch.randn(1, channel, 1, 1) * 0.01)
    self.a = None if final else nn.Parameter(torch.randn(1, channel, 1, 1) * 0.01)

  def forward(self, x):
    x = x * F.softplus(self.h) + self.b
    return torch.sigmoid(x) if self.final else x + torch.tanh(x) * torch.tanh(self.a)


class BitEstimator(nn.Module):
  def __init__(self, channel):
    super().__init__()
    self.f1, self.f2, self.f3, self.f4 = Bitparm(channel), Bitparm(channel), Bitparm(channel), Bitparm(channel, True)

  def forward(self, x):
    return self.f4(self.f3(self.f2(self.f1(x))))


class ImageCompressor(nn.Module):
  def __init__(self, out_channel_N=64, in_channel_N=4):
    super().__init__()
    self.Encoder = Analysis(out_channel_N, in_channel_N)
    self.Decoder = Synthesis(out_channel_N, in_channel_N)
    self.bitEstimator = BitEstimator(out_channel_N)

  training_noise = False

  def forward(self, x):  # rounding (or training noise, see use_training_noise)
    z = self.Encoder(x)
    z = z + torch.rand_like(z) - 0.5 if self.training_noise else torch.round(z)
    recon = self.Decoder(z).clamp(0.0, 1.0)
    prob = self.bitEstimator(z + 0.5) - self.bitEstimator(z - 0.5)
    bits = torch.sum(torch.clamp(-torch.log(prob + 1e-10) / math.log(2.0), 0, 50))
    return recon, bits / (x.shape[0] * x.shape[2] * x.shape[3])


class LocalCompressor(nn.Module):
  """The official CompressorWraper around an ImageCompressor."""

  def __init__(self, n=64, cin=4):
    super().__init__()
    self.model = ImageCompressor(n, cin)

  def forward(self, e):
    recon, bpp = self.model(e)
    return recon, torch.zeros_like(bpp), bpp


# ------------------------------------------------------------------------------------------------
# critic (official model/Discriminator.py DiscriminatorLinear)


class DiscriminatorLinear(nn.Module):
  def __init__(self, in_chn=3, ndf=64, slope=0.2, in_width=128):
    super().__init__()
    self.ndf = ndf
    down = lambda i, o: nn.Conv2d(i, o, 4, stride=2, padding=1, bias=False)
    same = lambda i, o: nn.Conv2d(i, o, 3, stride=1, padding=1, bias=False)
    chans = [in_chn, ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 16]
    mods = []
    for i in range(5):
      small = i < 3 and in_width < 128 // 2 ** i
      mods += [(same if small else down)(chans[i], chans[i + 1]), nn.LeakyReLU(slope)]
    mods += [nn.Conv2d(ndf * 16, ndf * 32, 4, stride=1, padding=0, bias=False), nn.LeakyReLU(slope)]
    self.main = nn.Sequential(*mods)
    self.output = nn.Linear(ndf * 32, 1)

  def forward(self, x):
    return self.output(self.main(x).view(-1, self.ndf * 32)).view(-1)


# ------------------------------------------------------------------------------------------------
# helpers


def perturb(module, seed=0):
  """Move every parameter and BatchNorm statistic off its initial value, so a wrong mapping shows
  (constant-initialised ones too, e.g. BatchNorm scales and the entropy model's matrices), while
  keeping magnitudes and GDN's positivity; returns the module in eval mode."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      spread = float(p.std()) if p.numel() > 1 else 0.0
      noise = noise * (0.1 * spread if spread > 1e-3 else 0.05)
      if isinstance(_owner(module, name), GDN):
        p.copy_(p.abs() + 0.2 * noise.abs())
      else:
        p.add_(noise)
    for m in module.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
        m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
  return module.eval()


def use_training_noise(module):
  """Compressors inside `module` quantise by additive U(−½, ½) noise (training) instead of rounding."""
  for m in module.modules():
    if isinstance(m, (EntropyBottleneck, ImageCompressor)):
      m.training_noise = True
  return module


def _owner(module, param_name):
  for part in param_name.split(".")[:-1]:
    module = getattr(module, part)
  return module


def nchw(a):
  return torch.from_numpy(np.array(np.asarray(a, np.float32).transpose(0, 3, 1, 2)))


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)
