"""Layers with a CPU formulation of their own, against XLA's general operation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.models import layers


@pytest.mark.parametrize("shape,k", [((2, 9, 11, 5), 3), ((3, 2, 7, 6, 4), 5), ((7, 8, 3), 3)])
def test_shifted_depthwise_and_its_gradients_equal_the_grouped_convolution(shape, k):
  rng = np.random.default_rng(0)
  x, g = (jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(2))
  kernel = jnp.asarray(rng.normal(size=(k, k, shape[-1])), jnp.float32)
  images = lambda a: a.reshape((-1,) + shape[-3:])

  def grouped(x, kernel):  # XLA's grouped convolution, on the images flattened to one batch axis
    return jax.lax.conv_general_dilated(images(x), kernel[:, :, None, :], (1, 1), "SAME",
                                        feature_group_count=shape[-1],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")).reshape(shape)

  y, vjp = jax.vjp(layers.shifted_depthwise, x, kernel)
  y_ref, vjp_ref = jax.vjp(grouped, x, kernel)
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  for got, want in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,strides,padding", [
    ((4, 4), (2, 2), ((2, 2), (2, 2))),   # the generator's up-sampling (torch k4 s2 p1)
    ((3, 3), (1, 1), ((2, 2), (2, 2))),   # IDEN's 'full' transposed conv (torch k3 s1 p0)
    ((2, 2), (2, 2), ((1, 1), (1, 1))),   # k2 s2 p0
    ((3, 2), (2, 3), ((1, 2), (0, 1))),   # uneven everything
])
def test_conv_transpose_and_its_gradients_equal_flax(kernel, strides, padding):
  import flax.linen as nn
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9, 7, 5)), jnp.float32)
  _assert_same_values_and_gradients(layers.ConvTranspose(4, kernel, strides=strides, padding=padding),
                                    nn.ConvTranspose(4, kernel, strides=strides, padding=padding), x,
                                    y_atol=1e-4, grad_atol=2e-4)


def _assert_same_values_and_gradients(ours, flax_own, x, y_atol, grad_atol):
  """Values and input/parameter gradients of two layers with the same (random) parameters, returned."""
  import flax.linen as nn
  rng = np.random.default_rng(0)
  params = nn.unbox(ours.init(jax.random.key(0), x))
  params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), params)
  y, vjp = jax.vjp(lambda p, x: ours.apply(p, x), params, x)
  y_ref, vjp_ref = jax.vjp(lambda p, x: flax_own.apply(p, x), params, x)
  np.testing.assert_allclose(y, y_ref, atol=y_atol, rtol=0)
  g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  for got, want in zip(jax.tree.leaves(vjp(g)), jax.tree.leaves(vjp_ref(g))):
    np.testing.assert_allclose(got, want, atol=grad_atol, rtol=1e-5)
  return params


@pytest.mark.parametrize("kernel,strides,padding", [
    ((3, 3), (1, 1), "SAME"),               # most convolutions
    ((3, 3), (1, 1), ((0, 0), (0, 0))),     # the encoders' long-range stem and blocks (torch p0)
    ((1, 1), (1, 1), "VALID"),              # 1×1 projections
    ((5, 3), (1, 1), ((2, 1), (0, 3))),     # uneven kernel and padding
    ((3, 3), (1, 1), ((-1, 2), (1, 0))),    # a negative (cropping) pad
    ((4, 4), (2, 2), ((1, 1), (1, 1))),     # strided: XLA's own gradient
])
def test_conv_and_its_gradients_equal_flax(kernel, strides, padding):
  import flax.linen as nn
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 10, 9, 5)), jnp.float32)
  ours = layers.Conv(6, kernel, strides=strides, padding=padding)
  # the forward pass is XLA's convolution in both: equal values
  params = _assert_same_values_and_gradients(ours, nn.Conv(6, kernel, strides=strides, padding=padding), x,
                                             y_atol=0, grad_atol=1e-4)
  # the CPU formulation is the one under test, not flax's (it keeps the kernel gradient's dot)
  hlo = jax.jit(jax.grad(lambda p: jnp.sum(ours.apply(p, x) ** 2))).lower(params).as_text()
  assert ("dot_general" in hlo) == (strides == (1, 1))


def test_conv_kernel_gradients_do_not_hold_every_layers_im2col():
  # The im2col of a layer (k² × its input) must be built in the backward pass, where its matmul
  # frees it: built in the forward pass, all of them would be live at once (4 layers: 822 MB of
  # temporaries against flax's 168 MB).
  import flax.linen as nn

  class Stack(nn.Module):
    conv: object

    @nn.compact
    def __call__(self, x):
      for _ in range(4):
        x = nn.relu(self.conv(64, (3, 3), padding="SAME")(x))
      return x

  x = jnp.zeros((4, 128, 128, 64))
  temp = {}
  for name, conv in (("ours", layers.Conv), ("flax", nn.Conv)):
    model = Stack(conv)
    params = model.init(jax.random.key(0), x)
    grad = jax.jit(jax.grad(lambda p, model=model: jnp.sum(model.apply(p, x) ** 2)))
    temp[name] = grad.lower(params).compile().memory_analysis().temp_size_in_bytes
  im2col = 9 * x.size * 4
  assert temp["ours"] < temp["flax"] + 3 * im2col, temp  # measured: 554 MB, 168 MB + 2.6 im2cols
