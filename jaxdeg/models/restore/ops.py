"""Parameter-free tensor ops shared by the restoration models (NHWC)."""
import jax.numpy as jnp


def pixel_shuffle(x, r=2):
  """(B, H, W, C·r²) -> (B, H·r, W·r, C); channel order as torch.nn.PixelShuffle (c, i, j)."""
  b, h, w, c = x.shape
  co = c // (r * r)
  x = x.reshape(b, h, w, co, r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(b, h * r, w * r, co)


def pixel_unshuffle(x, r=2):
  """Inverse of `pixel_shuffle`: (B, H, W, C) -> (B, H/r, W/r, C·r²)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // r, r, w // r, r, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(b, h // r, w // r, c * r * r)


def pad_to_multiple(x, multiple, mode="reflect"):
  """Pads H and W (bottom/right) up to a multiple; returns the padded array and the original size."""
  h, w = x.shape[-3], x.shape[-2]
  ph, pw = -h % multiple, -w % multiple
  if ph == 0 and pw == 0:
    return x, (h, w)
  # reflect needs pad < size; fall back to edge padding for tiny inputs
  if mode == "reflect" and (ph >= h or pw >= w):
    mode = "edge"
  pad = [(0, 0)] * (x.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
  return jnp.pad(x, pad, mode=mode), (h, w)
