import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.errors import UserError
from jaxdeg.models import layers
from jaxdeg.models.restore import NAFNet
from jaxdeg.models.restore.ops import pixel_shuffle
from jaxdeg.models.restore.tiling import tiled_apply
from tests.models.restore.helpers import random_variables


class ConvUNet(nn.Module):
  """A purely convolutional two-level U-Net (no global pooling): receptive radius 5 px."""

  @nn.compact
  def __call__(self, x):
    a = nn.gelu(layers.Conv(8, (3, 3), padding=1)(x))
    b = nn.gelu(layers.Conv(16, (2, 2), strides=2, padding="VALID")(a))
    b = nn.gelu(layers.Conv(16, (3, 3), padding=1)(b))
    a = a + pixel_shuffle(layers.Conv(32, (1, 1))(b), 2)
    return x[..., :2] + layers.Conv(2, (3, 3), padding=1)(a)


def rand(*shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def test_tiled_equals_whole_image_for_finite_receptive_field():
  m = ConvUNet()
  x = rand(2, 70, 94, 3)
  v = random_variables(m, x[:1, :16, :16])
  fn = jax.jit(lambda t: m.apply(v, t))
  whole = fn(x)
  # margin 8 ≥ receptive radius (5): equal everywhere, interior and seams
  tiled = tiled_apply(fn, x, tile=32, overlap=32 - 8, batch_tiles=5, align=2, margin=8)
  assert tiled.shape == (2, 70, 94, 2)
  np.testing.assert_allclose(tiled, whole, atol=1e-5)
  # a margin below the receptive radius is still close inside each tile, not exact at seams
  rough = tiled_apply(fn, x, tile=32, overlap=8, batch_tiles=5, align=2)
  assert 1e-5 < float(jnp.abs(rough - whole).max()) < 1.0


def test_identity_reconstructs_any_size_and_layout():
  calls = []

  def ident(t):
    calls.append(t.shape)
    return t * 1.0

  for shape in [(37, 53, 3), (1, 9, 5, 1), (3, 40, 40, 2)]:
    x = rand(*shape)
    for overlap in (0, 6):
      np.testing.assert_allclose(tiled_apply(ident, x, tile=16, overlap=overlap, batch_tiles=4), x, atol=1e-6)
  # bounded: never more than batch_tiles tiles in one call, one shape per image
  assert max(s[0] for s in calls) <= 4 and {s[1:3] for s in calls} <= {(16, 16), (9, 5)}


def test_nafnet_tiles_close_to_whole_image():
  # channel attention pools globally, so tiles only approximate the whole image
  m = NAFNet(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))
  x = rand(1, 45, 38, 3)
  v = random_variables(m, x)
  fn = jax.jit(lambda t: m.apply(v, t))
  tiled = tiled_apply(fn, x, tile=32, overlap=16, batch_tiles=4, align=4)
  assert tiled.shape == x.shape and bool(jnp.all(jnp.isfinite(tiled)))
  assert float(jnp.mean(jnp.abs(tiled - fn(x)))) < 0.1


def test_bad_arguments_are_named():
  x = jnp.zeros((8, 8, 3))
  with pytest.raises(UserError, match="overlap"):
    tiled_apply(lambda t: t, x, tile=8, overlap=8)
  with pytest.raises(UserError, match="align"):
    tiled_apply(lambda t: t, x, tile=10, overlap=2, align=4)
  with pytest.raises(UserError, match="tile size"):
    tiled_apply(lambda t: t[:, ::2], x, tile=4, overlap=2)
