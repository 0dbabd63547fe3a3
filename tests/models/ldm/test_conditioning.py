"""GenDeg's degradation context: identity-initialised projection, null tokens, condition dropout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.degrade import intensity
from jaxdeg.models.ldm.conditioning import (DEGRADATION_TYPES, DegradationContext, dropout_masks, null_inputs,
                                            type_index)

L, D = 6, 16


@pytest.fixture(scope="module")
def run():
  """{stats_columns_init: (variables, output from type ids, output from text)}, one compile."""
  models = {k: DegradationContext(L, D, stats_columns_init=k) for k in ("zeros", "uniform")}
  stats = intensity.stats_one_hot(jnp.array([0.1, 0.3]), jnp.array([0.05, 0.2]))
  ids = jnp.array([type_index("rain"), type_index("snow+haze")])

  @jax.jit
  def go(key, stats, ids, text):
    out = {}
    for name, m in models.items():
      v = m.init(key, stats, ids)
      out[name] = v, m.apply(v, stats, ids), m.apply(v, stats, text=text)
    return out
  return go(jax.random.key(0), stats, ids, jax.random.normal(jax.random.key(1), (2, L, D)))


def test_zero_stats_columns_leave_the_context_unchanged(run):
  v, out, out_text = run["zeros"]
  tokens = v["params"]["type_tokens"].unbox()
  np.testing.assert_allclose(out, tokens[jnp.array([1, 6])], atol=1e-6)
  assert out_text.shape == (2, L, D)


def test_uniform_init_is_identity_on_the_context_columns(run):
  v, out, _ = run["uniform"]
  p = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, v["params"],
                   is_leaf=lambda x: hasattr(x, "unbox"))
  k, b = p["cc_projection"]["kernel"], p["cc_projection"]["bias"]
  assert k.shape == (D + 2, D)
  np.testing.assert_array_equal(k[:D], np.eye(D))
  np.testing.assert_array_equal(b, 0)
  assert float(jnp.abs(k[D:]).max()) > 0 and float(jnp.abs(k[D:]).max()) <= 1 / np.sqrt(D + 2)
  # stats_proj as torch's nn.Linear(129, L) starts (GenDeg): weight and bias U(±1/√129)
  bound = 1 / np.sqrt(intensity.ONE_HOT_SIZE)
  for name in ("kernel", "bias"):
    w = np.asarray(p["stats_proj"][name])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound and abs(w.mean()) < 0.2 * bound, name
  # out = context + [stats_proj(μ), stats_proj(σ)] @ extra rows
  s = jnp.einsum("bki,il->blk", intensity.stats_one_hot(jnp.array([0.1, 0.3]), jnp.array([0.05, 0.2])),
                 p["stats_proj"]["kernel"]) + p["stats_proj"]["bias"][None, :, None]
  context = p["type_tokens"][jnp.array([1, 6])]
  np.testing.assert_allclose(out, context + s @ k[D:], atol=1e-5)


def test_ordinal_stats_init_makes_the_context_linear_in_the_bin():
  m = DegradationContext(L, D, stats_proj_init="ordinal")
  mu = jnp.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 127, 128])
  stats = jnp.stack([intensity.one_hot(mu), intensity.one_hot(jnp.full_like(mu, 128))], axis=-2)
  v = m.init(jax.random.key(0), stats, jnp.zeros_like(mu))
  kernel = np.asarray(v["params"]["stats_proj"]["kernel"].unbox())
  assert kernel[0, 0] == -1 and kernel[127, 0] == 1 and (kernel[128] == 0).all()
  assert (np.diff(kernel[:128, 0]) > 0).all() and (kernel == kernel[:, :1]).all()
  out = np.asarray(m.apply(v, stats, jnp.zeros_like(mu)))
  # equal bin steps give equal context steps at initialisation
  steps = np.diff(out[:9], axis=0)
  np.testing.assert_allclose(steps, np.broadcast_to(steps[:1], steps.shape), atol=1e-6)
  assert np.abs(steps).max() > 0
  with pytest.raises(ValueError, match="stats_proj_init"):
    DegradationContext(L, D, stats_proj_init="sorted").init(jax.random.key(0), stats, jnp.zeros_like(mu))


def test_null_tokens_types_and_dropout():
  stats, ids = null_inputs(3)
  assert stats.shape == (3, 2, intensity.ONE_HOT_SIZE) and bool((stats[..., -1] == 1).all())
  assert ids.tolist() == [len(DEGRADATION_TYPES)] * 3 and type_index("") == len(DEGRADATION_TYPES)
  with pytest.raises(ValueError, match="fog"):
    type_index("fog")
  drop_text, drop_image = dropout_masks(jax.random.key(0), 100_000, p=0.05)
  both = float((drop_text & drop_image).mean())
  assert abs(float(drop_text.mean()) - 0.10) < 0.005 and abs(float(drop_image.mean()) - 0.10) < 0.005
  assert abs(both - 0.05) < 0.004
