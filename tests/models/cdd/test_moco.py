"""MoCo helpers: the queue wraps around, the momentum update, InfoNCE logits; and the encoders'
BatchNorm under data sharding computes the single-device (global-batch) statistics."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdeg.models.cdd import ConvBlock
from jaxdeg.models.cdd import moco
from tests.models.restore.helpers import random_variables


def test_queue_enqueue_wraps_around():
  q = moco.init_queue(jax.random.key(0), size=5, dim=3)
  np.testing.assert_allclose(np.linalg.norm(q.keys, axis=1), 1.0, rtol=1e-6)
  assert int(q.ptr) == 0
  keys = lambda v, n: jnp.full((n, 3), float(v))
  q = moco.enqueue(q, keys(1, 2))
  q = moco.enqueue(q, keys(2, 2))
  assert int(q.ptr) == 4
  q = moco.enqueue(q, keys(3, 2))  # rows 4 and 0: the oldest entries go first
  assert int(q.ptr) == 1
  np.testing.assert_array_equal(q.keys[:, 0], [3, 1, 2, 2, 3])
  q = jax.jit(moco.enqueue)(q, keys(4, 5))  # a full turn: everything replaced, pointer back in place
  assert int(q.ptr) == 1 and bool(jnp.all(q.keys == 4))


def test_momentum_update():
  k = {"a": jnp.ones(3), "b": {"c": jnp.zeros((2, 2))}}
  q = {"a": jnp.zeros(3), "b": {"c": jnp.ones((2, 2))}}
  out = moco.momentum_update(k, q)
  np.testing.assert_allclose(out["a"], 0.999)
  np.testing.assert_allclose(out["b"]["c"], 0.001, rtol=1e-5)
  # the query gets no gradient through the key encoder
  g = jax.grad(lambda q: moco.momentum_update(k, q)["a"].sum())(q)
  assert float(jnp.abs(g["a"]).sum()) == 0.0


def test_info_nce_logits_put_the_positive_first():
  q = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8)), jnp.float32)

  @jax.jit
  def run(q):
    queue = moco.init_queue(jax.random.key(1), size=6, dim=8)
    logits, k = moco.contrastive_logits(q, 3 * q, queue)  # key = the query, rescaled: cosine 1
    return logits, k, queue.keys, moco.contrastive_loss(logits)

  logits, k, queue_keys, loss = map(np.asarray, run(q))
  assert logits.shape == (4, 7)
  np.testing.assert_allclose(logits[:, 0], 1 / moco.TEMPERATURE, rtol=1e-5)
  qn = np.asarray(q) / np.linalg.norm(q, axis=1, keepdims=True)
  np.testing.assert_allclose(k, qn, rtol=1e-5)
  np.testing.assert_allclose(logits[:, 1:], qn @ queue_keys.T / 0.07, rtol=1e-4, atol=1e-4)
  assert np.all(logits[:, 0] >= logits[:, 1:].max(axis=1))
  log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  assert abs(float(loss) + np.mean(log_softmax[:, 0])) < 1e-5


def test_batchnorm_statistics_are_global_under_data_sharding():
  # 8 devices, batch of 8 sharded one per device: the outputs and running statistics of HDEN's
  # conv → BatchNorm block equal the single-device step's (mean/variance reduce the global batch)
  block = ConvBlock(8, 3, 1, 1)
  y = jnp.asarray(np.random.default_rng(0).normal(size=(8, 6, 6, 3)), jnp.float32)
  v = random_variables(block, y)
  step = lambda v, y: block.apply(v, y, train=True, mutable=["batch_stats"])
  single = jax.jit(step)(v, y)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  replicated, by_batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  sharded = jax.jit(step, in_shardings=(replicated, by_batch), out_shardings=(by_batch, replicated))(
      jax.device_put(v, replicated), jax.device_put(y, by_batch))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), single, sharded)
  # and they are not one device's slice statistics
  alone = jax.jit(step)(v, y[:1])[1]["batch_stats"]["norm"]["mean"]
  assert float(jnp.abs(alone - single[1]["batch_stats"]["norm"]["mean"]).max()) > 1e-3
