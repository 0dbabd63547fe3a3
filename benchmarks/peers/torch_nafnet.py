"""NAFNet in PyTorch (NCHW), the same architecture and parameter layout as
`jaxdeg.models.restore.NAFNet`: the eager peer for benchmarks/bench_restore.py and the reference
for the parity test. Layer names follow the official NAFNet code so its checkpoints load here too.
"""
import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
  """LayerNorm over channels of an NCHW tensor (eps 1e-6)."""

  def __init__(self, c, eps=1e-6):
    super().__init__()
    self.weight = nn.Parameter(torch.ones(c))
    self.bias = nn.Parameter(torch.zeros(c))
    self.eps = eps

  def forward(self, x):
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    return (x - mu) / (var + self.eps).sqrt() * self.weight[:, None, None] + self.bias[:, None, None]


def simple_gate(x):
  a, b = x.chunk(2, dim=1)
  return a * b


class NAFBlock(nn.Module):

  def __init__(self, c, dw_expand=2, ffn_expand=2):
    super().__init__()
    dw = c * dw_expand
    self.norm1 = LayerNorm2d(c)
    self.conv1 = nn.Conv2d(c, dw, 1)
    self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
    self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
    self.conv3 = nn.Conv2d(dw // 2, c, 1)
    self.norm2 = LayerNorm2d(c)
    self.conv4 = nn.Conv2d(c, c * ffn_expand, 1)
    self.conv5 = nn.Conv2d(c * ffn_expand // 2, c, 1)
    self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
    self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

  def forward(self, inp):
    x = simple_gate(self.conv2(self.conv1(self.norm1(inp))))
    x = self.conv3(x * self.sca(x))
    y = inp + x * self.beta
    x = self.conv5(simple_gate(self.conv4(self.norm2(y))))
    return y + x * self.gamma


class NAFNet(nn.Module):

  def __init__(self, img_channel=3, width=16, middle_blk_num=1, enc_blk_nums=(), dec_blk_nums=()):
    super().__init__()
    self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
    self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
    self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
    self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
    chan = width
    for n in enc_blk_nums:
      self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
      self.downs.append(nn.Conv2d(chan, 2 * chan, 2, 2))
      chan *= 2
    self.middle_blks = nn.Sequential(*[NAFBlock(chan) for _ in range(middle_blk_num)])
    for n in dec_blk_nums:
      self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
      chan //= 2
      self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
    self.padder_size = 2 ** len(enc_blk_nums)

  def forward(self, inp):
    h, w = inp.shape[-2:]
    ph, pw = -h % self.padder_size, -w % self.padder_size
    if ph or pw:  # reflect, as the jaxdeg model
      inp = F.pad(inp, (0, pw, 0, ph), mode="reflect")
    return (self.ending(self.features(inp)) + inp)[:, :, :h, :w]

  def features(self, inp):
    """The U-Net body on an input already padded to a multiple of padder_size."""
    x = self.intro(inp)
    skips = []
    for enc, down in zip(self.encoders, self.downs):
      x = enc(x)
      skips.append(x)
      x = down(x)
    x = self.middle_blks(x)
    for dec, up, skip in zip(self.decoders, self.ups, skips[::-1]):
      x = dec(up(x) + skip)
    return x
