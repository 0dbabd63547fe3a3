"""DegradationModel: the training path of the embeddings (quantisation noise, BatchNorm updates,
rates) and the no-entropy / no-IDEN ablation switches."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.models.cdd import DegradationModel
from tests.models.restore.helpers import random_variables

TINY = dict(global_dim=16, encoder_dim=16, local_latent=8, generator_width=4, generator_blocks=(1, 1, 1, 1, 1))


def images(n=2, size=32, seed=0):
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.uniform(-1, 1, (n, size, size, 3)), jnp.float32) for _ in range(2)]


def key(seed):
  return jax.random.key(seed, impl="rbg")  # cheap to compile on CPU (see test_generator)


def test_training_embeddings_use_the_quantize_stream_and_update_batch_stats():
  # the generator has no training mode; everything that does is in `embed`
  model = DegradationModel(**TINY)
  x, y = images()
  v = random_variables(model, x, y)

  @jax.jit
  def embed(v, quantize):
    return model.apply(v, y, True, method=DegradationModel.embed, rngs={"quantize": quantize},
                       mutable=["batch_stats"])

  emb, updates = embed(v, key(1))
  emb2, _ = embed(v, key(2))
  assert emb.local_embedding.shape == (2, 16, 16, 4)
  assert float(emb.rate_global) > 0 and float(emb.rate_local) > 0 and float(emb.aux_loss) > 0
  # the quantisation noise is the 'quantize' stream's: another key, other noisy codes
  assert float(jnp.abs(emb.global_embedding - emb2.global_embedding).max()) > 1e-4
  assert float(jnp.abs(emb.local_embedding - emb2.local_embedding).max()) > 1e-4
  np.testing.assert_array_equal(emb.global_code, emb2.global_code)
  for encoder in ("global_encoder", "local_encoder"):
    old = v["batch_stats"][encoder]["short_range_0"]["norm"]["mean"]
    new = updates["batch_stats"][encoder]["short_range_0"]["norm"]["mean"]
    assert float(jnp.abs(new - old).max()) > 1e-6


def test_without_compressors_and_iden_the_compressors_are_bypassed():
  model = DegradationModel(**TINY, compress_global=False, compress_local=False, use_iden=False)
  x, y = images()
  v = random_variables(model, x, y)
  emb = jax.jit(lambda v, y: model.apply(v, y, True, method=DegradationModel.embed, mutable=["batch_stats"])[0])(v, y)
  assert emb.local_embedding is None
  np.testing.assert_array_equal(emb.global_embedding, emb.global_code)
  assert float(emb.rate_global) == float(emb.rate_local) == float(emb.aux_loss) == 0.0
