"""Small NHWC helpers shared by the CDD modules: activations by name, PyTorch-style padding,
align-corners bilinear resize and average pooling."""
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {
    None: lambda x: x,
    "relu": nn.relu,
    "lrelu": lambda x: nn.leaky_relu(x, 0.01),  # torch nn.LeakyReLU() default slope
    "lrelu0.1": lambda x: nn.leaky_relu(x, 0.1),
    "lrelu0.2": lambda x: nn.leaky_relu(x, 0.2),
}


def activation(name):
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; choose one of {sorted(k for k in ACTIVATIONS if k)}")
  return ACTIVATIONS[name]


def torch_padding(p):
  """Symmetric zero padding of `p` pixels on both spatial axes, as torch's Conv2d(padding=p)."""
  return ((p, p), (p, p))


def torch_transpose_padding(kernel, padding, output_padding=0):
  """`nn.ConvTranspose` padding that reproduces torch ConvTranspose2d(kernel, padding, output_padding).

  Flax pads the stride-dilated input; torch crops `padding` from the full output, hence k-1-p."""
  lo = kernel - 1 - padding
  return ((lo, lo + output_padding), (lo, lo + output_padding))


def _align_corners_matrix(n_out, n_in):
  """(n_out, n_in) linear-interpolation weights with the corner pixels of input and output aligned."""
  m = np.zeros((n_out, n_in), np.float32)
  if n_in == 1 or n_out == 1:
    m[:, 0] = 1.0  # torch samples the first pixel when a side has one pixel
    return m
  pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
  lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
  frac = (pos - lo).astype(np.float32)
  m[np.arange(n_out), lo] = 1 - frac
  m[np.arange(n_out), lo + 1] += frac
  return m


def resize_bilinear_align_corners(x, size):
  """Bilinear resize of NHWC `x` to `size` = (h, w) with align_corners=True (torch semantics).

  `jax.image.resize` uses half-pixel centres, which shifts the map against the official model;
  the resize is separable, so two small interpolation matrices do it exactly."""
  h, w = size
  if x.shape[1:3] == (h, w):
    return x
  rows = jnp.asarray(_align_corners_matrix(h, x.shape[1]), x.dtype)
  cols = jnp.asarray(_align_corners_matrix(w, x.shape[2]), x.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", rows, x, cols)


def avg_pool2(x):
  """2×2 average pooling with stride 2, dropping an odd last row/column (torch AvgPool2d(2))."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


__all__ = ["activation", "torch_padding", "torch_transpose_padding", "resize_bilinear_align_corners", "avg_pool2"]
