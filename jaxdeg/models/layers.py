"""Layers whose parameters carry logical axis names, so sharding is a config rule, not code.

Logical axes used across jaxdeg models:
  'kh', 'kw'  convolution window            'in'   input features/channels
  'out'       output features/channels      'heads' attention heads (where split out)
`jaxdeg.train.partitioning` maps them to mesh axes with `config.sharding.rules`
(default: 'out' -> 'fsdp', everything else replicated; a dimension that the mesh axis
does not divide stays replicated).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_AXES = ("kh", "kw", "in", "out")
DENSE_AXES = ("in", "out")
VECTOR_AXES = ("out",)

_lecun = nn.initializers.lecun_normal()
_zeros = nn.initializers.zeros_init()
_ones = nn.initializers.ones_init()


def logical(init, axes):
  return nn.with_logical_partitioning(init, axes)


def _contract_rows(a, b, precision):
  """aᵀ b for a (M, Cin), b (M, Cout), without materialising the transpose."""
  return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())), precision=precision)


def _own_kernel_gradient(conv, kernel_grad):
  """conv(x, kernel, *static) whose input gradient stays XLA's and whose kernel gradient is
  kernel_grad(x, g, kernel.shape, *static): for the CPU, where XLA's is slow."""
  @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
  def conv_(x, kernel, static):
    return conv(x, kernel, *static)

  def forward(x, kernel, static):
    return conv(x, kernel, *static), (x, kernel)

  def backward(static, residuals, g):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: conv(x, kernel, *static), x)
    return input_vjp(g)[0], kernel_grad(x, g, kernel.shape, *static).astype(kernel.dtype)

  conv_.defvjp(forward, backward)
  return lambda x, kernel, *static: conv_(x, kernel, static)


def _conv_kernel_grad(x, g, kernel_shape, pads, precision):
  """∂/∂kernel of a stride-1 convolution of x (N, H, W, Cin), padded by `pads`, with output
  gradient g (N, Ho, Wo, Cout) as one matmul: the k² shifted windows of x side by side (im2col),
  contracted with g over every output position.

  XLA:CPU takes this gradient as a convolution whose window is the whole output image, off its
  fast path and ever slower with the batch: for a 3×3, 8×126²×128 → 256 layer of the universal
  model's encoders 3.3 s, against 0.57 s as one matmul and 0.38 s forward (2-core CPU). Strided
  layers keep XLA's gradient, which is as fast there."""
  kh, kw, cin, _ = kernel_shape
  n, ho, wo, cout = g.shape
  # The padding zero is read from g (g·0: XLA keeps float products with 0, which are NaN for a NaN g,
  # as the gradient then is anyway), so the im2col (k² × the activation) cannot be built before g
  # exists. Else XLA builds every layer's in the forward pass and holds them all: the universal
  # model's step took 19.4 GB, not 9.6 (optimization barriers are gone before XLA:CPU schedules).
  zero = (g[0, 0, 0, 0] * 0).astype(x.dtype)
  xp = jax.lax.pad(x, zero, [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)])
  columns = jnp.concatenate([xp[:, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)], axis=-1)
  return _contract_rows(columns.reshape(-1, kh * kw * cin), g.reshape(-1, cout), precision).reshape(kernel_shape)


def _nhwc_conv(x, kernel, pads, precision):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=precision)


_conv_cpu = _own_kernel_gradient(_nhwc_conv, _conv_kernel_grad)


def _conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                          dimension_numbers=None, feature_group_count=1, precision=None):
  """lax.conv_general_dilated for nn.Conv; on CPU, stride-1 2-D NHWC convolutions take their
  kernel gradient as one matmul (`_conv_kernel_grad`). Same values and input gradient."""
  plain = (jax.default_backend() == "cpu" and lhs.ndim == 4 and feature_group_count == 1
           and all(d == 1 for d in (*window_strides, *(lhs_dilation or ()), *(rhs_dilation or ())))
           and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")))
  if not plain:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return _conv_cpu(lhs, rhs, tuple(tuple(p) for p in padding), precision)


def Conv(features, kernel_size=(3, 3), *, kernel_init=_lecun, bias_init=_zeros, **kw):
  """`nn.Conv` with logically partitioned kernel and bias (and, on CPU, `_conv_general_dilated`)."""
  return nn.Conv(features, kernel_size, kernel_init=logical(kernel_init, CONV_AXES),
                 bias_init=logical(bias_init, VECTOR_AXES), conv_general_dilated=_conv_general_dilated, **kw)


def _dilated_valid_conv(x, kernel, pads, strides, precision):
  """The transposed convolution as flax computes it: x (N, H, W, Cin) dilated by `strides`, padded by
  `pads` ((lo, hi) per spatial axis), then a VALID stride-1 convolution with kernel (kh, kw, Cin, Cout)."""
  config = [(0, 0, 0)] + [(lo, hi, s - 1) for (lo, hi), s in zip(pads, strides)] + [(0, 0, 0)]
  return jax.lax.conv_general_dilated(jax.lax.pad(x, jnp.zeros((), x.dtype), config), kernel, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)


def _transposed_kernel_grad(x, g, kernel_shape, pads, strides, precision):
  """∂/∂kernel of `_dilated_valid_conv` with output gradient g, one matmul per tap on the undilated
  input: y[o] = Σ_t z[o + t] W[t] and z[lo + s·a] = x[a], so dW[t] = Σ_a x[a]ᵀ g[lo + s·a − t]
  (g read with stride s from offset lo − t, zeros outside). XLA's own kernel gradient convolves
  the dilated input, mostly zeros: 245 ms against 37 ms here for a 4×4 stride-2 layer
  2×64²×128 → 64, 1.2 s against 0.35 s for a 3×3 'full' one 2×126²×256 → 256 (2-core CPU)."""
  kh, kw, cin, cout = kernel_shape
  n, h, w = x.shape[:3]
  grids = []
  for (lo, _), s, k, size_in, size_out in zip(pads, strides, (kh, kw), (h, w), g.shape[1:3]):
    below, above = max(0, k - 1 - lo), max(0, lo + s * (size_in - 1) - (size_out - 1))
    grids.append((below, above, lo + below))
  gp = jnp.pad(g, [(0, 0)] + [(below, above) for below, above, _ in grids] + [(0, 0)])
  x2 = x.reshape(-1, cin)
  (_, _, row0), (_, _, col0) = grids
  (sh, sw) = strides
  taps = [jax.lax.slice(gp, (0, row0 - i, col0 - j, 0), (n, row0 - i + sh * (h - 1) + 1, col0 - j + sw * (w - 1) + 1, cout),
                        (1, sh, sw, 1)).reshape(-1, cout)
          for i in range(kh) for j in range(kw)]
  return jnp.stack([_contract_rows(x2, t, precision) for t in taps]).reshape(kernel_shape)


_transposed_conv_cpu = _own_kernel_gradient(_dilated_valid_conv, _transposed_kernel_grad)


class _PaddedConvTranspose(nn.ConvTranspose):
  """`nn.ConvTranspose` (same params, same result) that, for explicit padding on NHWC inputs,
  dilates and pads the input itself and runs a VALID convolution.

  lax.conv_transpose is a convolution padded beyond SAME (k-1-p per side); XLA:CPU computes the
  kernel gradient of such a convolution off its fast path: 47 s instead of 1.3 s for one 3×3,
  8×64²×128 → 256 layer (jax 0.10), which made the universal model's train step ~3× slower.
  With the padding in a lax.pad the gradient is that of a VALID convolution; on CPU the kernel
  gradient is moreover taken tap by tap on the undilated input (`_transposed_kernel_grad`)."""

  @nn.compact
  def __call__(self, inputs):
    explicit = not isinstance(self.padding, str)
    if not explicit or inputs.ndim != 4 or self.transpose_kernel or self.kernel_dilation not in (None, 1, (1, 1)):
      return super().__call__(inputs)
    strides = self.strides or (1, 1)
    kernel = self.param("kernel", self.kernel_init, tuple(self.kernel_size) + (inputs.shape[-1], self.features),
                        self.param_dtype)
    inputs, kernel = nn.dtypes.promote_dtype(inputs, kernel, dtype=self.dtype)
    pads, strides = tuple(tuple(p) for p in self.padding), tuple(strides)
    conv = _transposed_conv_cpu if jax.default_backend() == "cpu" else _dilated_valid_conv
    y = conv(inputs, kernel, pads, strides, self.precision)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype).astype(y.dtype)
    return y


def ConvTranspose(features, kernel_size=(2, 2), *, kernel_init=_lecun, bias_init=_zeros, **kw):
  """`nn.ConvTranspose` with logically partitioned kernel and bias (see _PaddedConvTranspose)."""
  return _PaddedConvTranspose(features, kernel_size, kernel_init=logical(kernel_init, CONV_AXES),
                              bias_init=logical(bias_init, VECTOR_AXES), **kw)


def Dense(features, *, kernel_init=_lecun, bias_init=_zeros, **kw):
  """`nn.Dense` with logically partitioned kernel and bias."""
  return nn.Dense(features, kernel_init=logical(kernel_init, DENSE_AXES),
                  bias_init=logical(bias_init, VECTOR_AXES), **kw)


def _pad_same(x, kh, kw):
  return jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)])


def _shifted_sum(x, kernel):
  """Σ over the k×k taps of x shifted by the tap, times the tap's per-channel weight ('SAME')."""
  kh, kw = kernel.shape[:2]
  h, w = x.shape[-3], x.shape[-2]
  xp = _pad_same(x, kh, kw)
  return sum(xp[..., i:i + h, j:j + w, :] * kernel[i, j] for i in range(kh) for j in range(kw))


@jax.custom_vjp
def shifted_depthwise(x, kernel):
  """Stride-1 'SAME' depthwise convolution of x (..., H, W, C) with kernel (kh, kw, C), as shifted
  multiply-adds. The custom gradient keeps only x for the backward pass (autodiff kept all k² shifted
  copies: 9 × the activation per layer) and sums the kernel gradient image by image, so each
  image's activation and gradient stay in cache for all k² taps: the kernel gradient of a
  8×128²×32 layer took 56–70 ms as k² passes over the batch, 23 ms so."""
  return _shifted_sum(x, kernel)


def _shifted_depthwise_fwd(x, kernel):
  return _shifted_sum(x, kernel), (x, kernel)


def _shifted_depthwise_bwd(residuals, g):
  x, kernel = residuals
  kh, kw, c = kernel.shape
  h, w = x.shape[-3], x.shape[-2]
  dx = _shifted_sum(g, kernel[::-1, ::-1])  # correlation's transpose: the flipped kernel

  def image_taps(xg):
    xi, gi = xg
    xp = _pad_same(xi, kh, kw)
    return jnp.stack([jnp.sum(xp[i:i + h, j:j + w] * gi, axis=(0, 1), dtype=jnp.float32)
                      for i in range(kh) for j in range(kw)])
  images = lambda a: a.reshape((-1,) + a.shape[-3:])
  dk = jnp.sum(jax.lax.map(image_taps, (images(x), images(g))), axis=0)
  return dx, dk.reshape(kh, kw, c).astype(kernel.dtype)


shifted_depthwise.defvjp(_shifted_depthwise_fwd, _shifted_depthwise_bwd)


class DepthwiseConv(nn.Module):
  """Stride-1 k×k per-channel conv ('SAME' padding), parameters laid out exactly as
  `nn.Conv(C, (k, k), feature_group_count=C)` (kernel (k, k, 1, C), bias (C,)).

  XLA's CPU backend runs grouped convolutions ~25× slower than the same arithmetic written as
  k² shifted multiply-adds, so on CPU it uses the latter (`shifted_depthwise`); on GPU/TPU the
  grouped conv.
  """
  kernel_size: tuple = (3, 3)
  use_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    kh, kw = self.kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
      raise ValueError(f"DepthwiseConv: odd kernel sizes only, got {self.kernel_size}")
    kernel = self.param("kernel", logical(_lecun, CONV_AXES), (kh, kw, 1, c))
    dtype = self.dtype or x.dtype
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if jax.default_backend() == "cpu":
      y = shifted_depthwise(x, kernel[:, :, 0])
    else:
      y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", feature_group_count=c,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", logical(_zeros, VECTOR_AXES), (c,)).astype(dtype)
    return y


def LayerNorm(**kw):
  return nn.LayerNorm(scale_init=logical(_ones, VECTOR_AXES), bias_init=logical(_zeros, VECTOR_AXES), **kw)


def GroupNorm(num_groups=32, **kw):
  return nn.GroupNorm(num_groups=num_groups, scale_init=logical(_ones, VECTOR_AXES),
                      bias_init=logical(_zeros, VECTOR_AXES), **kw)


def param(module: nn.Module, name, init, shape, axes):
  """A free parameter (e.g. a per-channel scale) with logical axes."""
  return module.param(name, logical(init, axes), shape)


__all__ = ["Conv", "ConvTranspose", "DepthwiseConv", "Dense", "LayerNorm", "GroupNorm", "param", "logical",
           "CONV_AXES", "DENSE_AXES", "VECTOR_AXES"]
