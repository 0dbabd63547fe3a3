"""The CPU form of multi-head attention (softmax normalised after the values) against JAX's own."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.models.ldm.common import attention


def test_cpu_attention_and_its_gradients_equal_jax_dot_product_attention():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(2, 9, 16)) * 10, jnp.float32)  # logits past exp's float32 range: the max shift matters
  k, v = (jnp.asarray(rng.normal(size=(2, 7, 16)) * 10, jnp.float32) for _ in range(2))
  g = jnp.asarray(rng.normal(size=(2, 9, 16)), jnp.float32)
  ours = lambda q, k, v: attention(q, k, v, heads=4)
  theirs = lambda q, k, v: attention(q, k, v, heads=4, implementation="xla")  # jax.nn.dot_product_attention
  y, vjp = jax.vjp(ours, q, k, v)
  y_ref, vjp_ref = jax.vjp(theirs, q, k, v)
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  for got, want in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
