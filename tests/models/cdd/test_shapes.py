"""Parameter counts at 128² (PAPERS.md part A) and output shapes of every CDD module, by
`jax.eval_shape` (nothing is compiled)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxdeg.errors import UserError
from jaxdeg.models.cdd import (HDEN, IDEN, Critic, DegradationModel, Generator, GlobalCompressor, LocalCompressor)

RNGS = {"params": jax.random.key(0), "noise": jax.random.key(1), "quantize": jax.random.key(2)}
# narrow and shallow: tracing the full generator takes seconds, shapes do not need it
TINY_GENERATOR = dict(width=8, blocks=(1, 1, 1, 1, 1))
TINY_MODEL = dict(global_dim=16, encoder_dim=16, local_latent=8, generator_width=8, generator_blocks=(1, 1, 1, 1, 1))


def spec(*shape):
  return jax.ShapeDtypeStruct(shape, jnp.float32)


def n_params(tree):
  return sum(x.size for x in jax.tree.leaves(nn.unbox(tree)))


@pytest.fixture(scope="module")
def full():
  """(outputs, variables) of the paper's model on a training batch of 128² crops, one trace."""
  img = spec(2, 128, 128, 3)
  outputs, variables = jax.eval_shape(lambda x, y: DegradationModel().init_with_output(RNGS, x, y, train=True),
                                      img, img)
  return outputs, nn.unbox(variables)


def test_parameter_counts_at_128(full):
  _, variables = full
  p = variables["params"]
  assert abs(n_params(p["generator"]) / 11.7e6 - 1) < 0.03, n_params(p["generator"])
  assert abs(n_params(p["global_encoder"]) / 1.06e6 - 1) < 0.02, n_params(p["global_encoder"])
  assert abs(n_params(p["local_encoder"]) / 1.15e6 - 1) < 0.02, n_params(p["local_encoder"])
  assert abs(n_params(p) / 14.5e6 - 1) < 0.02, n_params(p)  # the paper's trainable total
  # BatchNorm statistics exist only in the two encoders
  assert set(variables["batch_stats"]) == {"global_encoder", "local_encoder"}


def test_full_model_shapes_in_training(full):
  (y_hat, emb), _ = full
  assert y_hat.shape == (2, 128, 128, 3)
  assert emb.global_embedding.shape == emb.global_code.shape == (2, 256)
  assert emb.local_embedding.shape == (2, 64, 64, 4)
  assert emb.rate_global.shape == emb.rate_local.shape == emb.aux_loss.shape == ()


def test_module_output_shapes():
  x = spec(3, 64, 96, 3)
  shape = lambda m, *a, **kw: jax.eval_shape(lambda *a: m.init_with_output(RNGS, *a, **kw)[0], *a).shape
  assert shape(HDEN(), x) == (3, 256)
  assert shape(IDEN(), x) == (3, 32, 48, 4)
  generator = Generator(**TINY_GENERATOR)
  assert shape(generator, x, spec(3, 256), spec(3, 32, 48, 4)) == (3, 64, 96, 3)
  # the local map may come from an image of another size: it is resized inside every layer
  assert shape(generator, x, spec(3, 256), spec(3, 16, 16, 4)) == (3, 64, 96, 3)
  assert shape(generator, x, spec(3, 256), None) == (3, 64, 96, 3)
  e, rate, aux = jax.eval_shape(lambda e: GlobalCompressor().init_with_output(RNGS, e, True)[0], spec(3, 256))
  assert e.shape == (3, 256) and rate.shape == aux.shape == ()
  e, rate, aux = jax.eval_shape(lambda e: LocalCompressor().init_with_output(RNGS, e, True)[0], spec(3, 32, 48, 4))
  assert e.shape == (3, 32, 48, 4) and rate.shape == aux.shape == ()
  for size in (32, 64, 128):
    assert shape(Critic(width=8), spec(2, size, size, 3)) == (2,)


def test_bad_sizes_are_named():
  with pytest.raises(UserError, match="multiples of 8"):
    jax.eval_shape(lambda *a: Generator(**TINY_GENERATOR).init(RNGS, *a), spec(1, 36, 40, 3), spec(1, 256), None)
  with pytest.raises(UserError, match="multiple of 16"):
    jax.eval_shape(lambda e: LocalCompressor().init(RNGS, e), spec(1, 24, 32, 4))
  with pytest.raises(UserError, match="4×4"):
    jax.eval_shape(lambda x: Critic(width=8).init(RNGS, x), spec(1, 256, 256, 3))


def test_ablations_change_the_parameter_tree():
  img = spec(1, 64, 64, 3)
  tree = lambda **kw: nn.unbox(jax.eval_shape(lambda x: DegradationModel(**TINY_MODEL, **kw).init(RNGS, x, x),
                                              img))["params"]
  assert set(tree(compress_global=False, compress_local=False)) == {"global_encoder", "local_encoder", "generator"}
  # the two compressor switches are independent
  assert set(tree(compress_global=False)) == {"global_encoder", "local_encoder", "local_compressor", "generator"}
  assert set(tree(compress_local=False)) == {"global_encoder", "global_compressor", "local_encoder", "generator"}
  assert set(tree(use_iden=False)) == {"global_encoder", "global_compressor", "generator"}
  no_ida = tree(use_ida=False, compress_global=False, compress_local=False, use_iden=False)
  assert "ida" not in no_ida["generator"]["enc1_0"]["sft1"]
  # without IDEN the condition conv sees the global embedding only
  assert no_ida["generator"]["condition_in"]["kernel"].shape == (3, 3, 16, 8)


def test_params_are_logically_partitioned():
  v = jax.eval_shape(lambda x: HDEN(dim=16, out_dim=8).init(RNGS, x), spec(1, 16, 16, 3))
  specs = nn.get_partition_spec(v)["params"]
  assert specs["long_range_0"]["conv"]["kernel"] == jax.sharding.PartitionSpec("kh", "kw", "in", "out")
  assert specs["mlp_in"]["kernel"] == jax.sharding.PartitionSpec("in", "out")
