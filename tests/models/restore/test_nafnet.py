import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.errors import UserError
from jaxdeg.models.restore import NAFBlock, NAFNet
from jaxdeg.models.restore.ops import pixel_shuffle, pixel_unshuffle
from tests.models.restore.helpers import count_params, random_variables

TINY = dict(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))
apply_tiny = jax.jit(NAFNet(**TINY).apply)  # one compile cache for the module


def count(model):
  return count_params(model, jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))


def rand(*shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def test_nafnet32_parameter_count():
  # the 29.2 M "NAFNet-32" of the all-in-one papers is the SIDD model: width 32, enc [2,2,4,8],
  # middle 12, dec [2,2,2,2]; the GoPro width-32 model ([1,1,1,28], 1, [1,1,1,1]) has 17.1 M
  n = count(NAFNet(width=32, enc_blocks=(2, 2, 4, 8), middle_blocks=12, dec_blocks=(2, 2, 2, 2)))
  assert abs(n / 29.2e6 - 1) < 0.02, n
  assert abs(count(NAFNet(32, (1, 1, 1, 28), 1, (1, 1, 1, 1))) / 17.11e6 - 1) < 0.01


def test_any_size_output_is_cropped_back():
  v = random_variables(NAFNet(**TINY), jnp.zeros((1, 16, 16, 3)))
  for hw in [(13, 11), (3, 5)]:
    x = rand(2, *hw, 3)
    y = apply_tiny(v, x)
    assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
    assert float(jnp.abs(y - x).max()) > 1e-3  # random weights: not the identity


def test_blocks_start_as_identity():
  # β = γ = 0 as initialised: a block returns its input whatever its other weights
  blk = NAFBlock()
  x = rand(1, 8, 8, 8)
  shapes = nn.unbox(jax.eval_shape(blk.init, jax.random.key(0), x))
  assert set(shapes["params"]) >= {"beta", "gamma", "norm1", "conv1", "conv2", "sca", "conv5"}
  v = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.zeros_like(a) if jax.tree_util.keystr(p).endswith(("['beta']", "['gamma']")) else a,
      random_variables(blk, x))
  np.testing.assert_allclose(blk.apply(v, x), x, atol=1e-6)


def test_params_are_logically_partitioned():
  v = jax.eval_shape(NAFNet(**TINY).init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  boxed = jax.tree.leaves(v, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert boxed and all(isinstance(b, nn.LogicallyPartitioned) for b in boxed)
  assert nn.get_partition_spec(v)["params"]["intro"]["kernel"] == jax.sharding.PartitionSpec(
      "kh", "kw", "in", "out")


def test_six_in_three_out_adds_to_last_channels():
  m = NAFNet(**TINY, in_channels=6, out_channels=3)
  x = rand(1, 16, 16, 6)
  # zero the ending conv: the output is then exactly the residual source
  v = jax.tree_util.tree_map_with_path(
      lambda path, a: jnp.zeros_like(a) if "ending" in jax.tree_util.keystr(path) else a,
      random_variables(m, x))
  np.testing.assert_allclose(m.apply(v, x), x[..., 3:], atol=1e-6)


def test_bfloat16_compute_float32_params():
  m = NAFNet(**TINY, dtype=jnp.bfloat16)
  x = jnp.ones((1, 16, 16, 3))
  shapes = jax.eval_shape(m.init, jax.random.key(0), x)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(nn.unbox(shapes)))
  assert jax.eval_shape(m.apply, nn.unbox(shapes), x).dtype == jnp.bfloat16


def test_bad_input_is_named():
  with pytest.raises(UserError, match="3 channels"):
    jax.eval_shape(NAFNet(**TINY).init, jax.random.key(0), jnp.zeros((1, 8, 8, 4)))
  with pytest.raises(UserError, match="same length"):
    jax.eval_shape(NAFNet(8, (1, 1), 1, (1,)).init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


def test_pixel_shuffle_matches_torch_channel_order():
  x = np.arange(2 * 3 * 4 * 8, dtype=np.float32).reshape(2, 3, 4, 8)  # C = 2·2²
  y = np.asarray(pixel_shuffle(jnp.asarray(x), 2))
  # torch: out[b, c, h*r+i, w*r+j] = in[b, c*r*r + i*r + j, h, w]
  for c in range(2):
    for i in range(2):
      for j in range(2):
        np.testing.assert_array_equal(y[:, i::2, j::2, c], x[..., c * 4 + i * 2 + j])
  np.testing.assert_array_equal(pixel_unshuffle(jnp.asarray(y), 2), x)


def test_matches_pytorch_reference():
  import torch
  from benchmarks.peers.torch_nafnet import NAFNet as TorchNAFNet
  from tests.models.restore.torch_convert import nafnet_params

  torch.manual_seed(0)
  ref = TorchNAFNet(3, 8, 1, (1, 1), (1, 1)).eval()
  with torch.no_grad():  # live residual branches
    for name, p in ref.named_parameters():
      if name.endswith(("beta", "gamma")):
        p.normal_(0, 0.5)
  x = np.array(rand(2, 13, 11, 3))
  with torch.no_grad():
    want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  v = nafnet_params(ref.state_dict())
  m = NAFNet(**TINY)
  shapes = nn.unbox(jax.eval_shape(m.init, jax.random.key(0), x))
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(np.shape, v)
  np.testing.assert_allclose(apply_tiny(v, x), want, atol=1e-4)



def test_parameter_gradients_match_pytorch_autograd():
  # the CPU path's depthwise convolution has its own VJP (jaxdeg.models.layers.shifted_depthwise)
  import torch
  from benchmarks.peers.torch_nafnet import NAFNet as TorchNAFNet
  from tests.models.restore.torch_convert import nafnet_params

  torch.manual_seed(1)
  ref = TorchNAFNet(3, 8, 1, (1, 1), (1, 1))
  with torch.no_grad():  # live residual branches, so every parameter gets a gradient
    for name, p in ref.named_parameters():
      if name.endswith(("beta", "gamma")):
        p.normal_(0, 0.5)
  x, weights = np.array(rand(2, 13, 11, 3)), np.array(rand(2, 13, 11, 3, seed=1))
  out = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  (out * torch.from_numpy(weights.transpose(0, 3, 1, 2))).sum().backward()
  want = nafnet_params({name: p.grad for name, p in ref.named_parameters()})["params"]
  params = nafnet_params(ref.state_dict())["params"]
  loss = lambda p: jnp.sum(NAFNet(**TINY).apply({"params": p}, x) * weights)
  got = jax.jit(jax.grad(loss))(params)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for path, g in jax.tree_util.tree_leaves_with_path(got):
    w = want
    for key in path:
      w = w[key.key]
    np.testing.assert_allclose(g, w, atol=2e-4, rtol=1e-4, err_msg=jax.tree_util.keystr(path))
