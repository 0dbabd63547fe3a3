"""Entropy bottleneck (a proper discrete density, trainable rate and medians), BitEstimator,
GDN/IGDN reparametrisation and the bound's gradient."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdeg.models.cdd.entropy import GDN, IGDN, BitEstimator, EntropyBottleneck, global_rate, local_rate, lower_bound


@pytest.fixture(scope="module")
def bottleneck():
  eb = EntropyBottleneck(4)
  x = jnp.asarray(np.random.default_rng(0).normal(3.0, 0.5, (64, 4)), jnp.float32)
  params = jax.jit(eb.init)(jax.random.key(0), x)["params"]
  return eb, params, x


def test_likelihoods_over_integer_bins_sum_to_one(bottleneck):
  eb, params, _ = bottleneck
  params = dict(params, quantiles=params["quantiles"].at[:, 0, 1].set(jnp.array([0.0, 0.3, -2.2, 7.5])))
  medians = params["quantiles"][:, 0, 1]
  values = medians[None, :] + jnp.arange(-300.0, 301.0)[:, None]  # [bins, C], bins centred on each median
  lik, (out, _) = jax.jit(lambda p, v: (eb.apply({"params": p}, v, method=eb.likelihood),
                                        eb.apply({"params": p}, v + 0.3)))(params, values)
  assert lik.shape == values.shape and bool(jnp.all(lik >= 1e-9))
  np.testing.assert_allclose(lik.sum(axis=0), 1.0, atol=1e-4)
  # eval quantises around the median: the offsets from it are integers
  np.testing.assert_allclose(out - medians, np.round(out - medians), atol=1e-4)


def test_training_lowers_the_rate_and_the_aux_loss_finds_the_median(bottleneck):
  eb, params, x = bottleneck  # data ~ N(3, 0.5): the medians start at 0
  opt = optax.adam(3e-2)

  def loss(p, key):
    _, lik = eb.apply({"params": p}, x, True, noise_key=key)
    return global_rate(lik) + eb.apply({"params": p}, method=eb.aux_loss), global_rate(lik)

  @jax.jit
  def step(p, s, key):
    (_, rate), g = jax.value_and_grad(loss, has_aux=True)(p, key)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, rate

  p, s = params, opt.init(params)
  rates = []
  for i in range(40):
    p, s, rate = step(p, s, jax.random.key(i))
    rates.append(float(rate))
  assert np.mean(rates[-5:]) < 0.5 * np.mean(rates[:5]), rates
  start = np.abs(np.asarray(params["quantiles"][:, 0, 1]) - 3.0)
  end = np.abs(np.asarray(p["quantiles"][:, 0, 1]) - 3.0)
  assert np.all(end < start - 0.5), (start, end)


def test_aux_loss_trains_only_the_quantiles(bottleneck):
  eb, params, _ = bottleneck
  g = jax.jit(jax.grad(lambda p: eb.apply({"params": p}, method=eb.aux_loss)))(params)
  assert float(jnp.abs(g["quantiles"]).sum()) > 0
  assert all(float(jnp.abs(v).sum()) == 0 for k, v in g.items() if k != "quantiles")


def test_bit_estimator_is_a_cdf():
  est = BitEstimator()
  x = jnp.linspace(-30.0, 30.0, 121)[:, None] * jnp.ones((1, 5))
  cdf = np.asarray(jax.jit(lambda x: est.init_with_output(jax.random.key(0), x)[0])(x))
  assert np.all((cdf > 0) & (cdf < 1)) and np.all(np.diff(cdf, axis=0) >= 0)
  assert cdf[-1].min() - cdf[0].max() > 0.9
  # clamped bits: a bin of probability 1/4 over a 2×2 map of a batch of 1 is 2 bits per pixel
  assert float(local_rate(jnp.full((1, 1, 1, 4), 0.25), (1, 2, 2, 4))) == pytest.approx(2.0, rel=1e-5)


def test_gdn_reparametrisation_stays_non_negative():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 3, 6)), jnp.float32)
  gdn, igdn = GDN(6), IGDN(6)

  @jax.jit
  def run(x):
    v = gdn.init(jax.random.key(0), x)
    negative = jax.tree.map(lambda a: -jnp.abs(a) - 0.3, v)
    return (gdn.apply(v, x), igdn.apply(v, x), gdn.apply(negative, method=gdn.effective_params),
            gdn.apply(negative, x))

  y, z, (beta, gamma), y_negative = run(x)
  # at init: beta = 1, gamma = 0.1·I, so y = x / sqrt(1 + 0.1 x²) and IGDN gives x·sqrt(1 + 0.1 x²):
  # GDN and IGDN are not inverses of each other, even at init
  np.testing.assert_allclose(y, x / np.sqrt(1 + 0.1 * x ** 2), rtol=1e-5)
  np.testing.assert_allclose(z, x * np.sqrt(1 + 0.1 * x ** 2), rtol=1e-5)
  # stored parameters driven negative still give non-negative effective ones
  assert bool(jnp.all(beta >= 0)) and bool(jnp.all(gamma >= 0)) and bool(jnp.all(jnp.isfinite(y_negative)))


def test_lower_bound_gradient_lets_a_stuck_value_rise():
  bound = jnp.float32(1.0)
  grads = jax.jit(lambda x: (jax.grad(lambda x: lower_bound(x, bound))(x),
                             jax.grad(lambda x: -lower_bound(x, bound))(x)))
  # below the bound, a loss that would push the value further down gets no gradient...
  down, up = grads(jnp.float32(0.5))
  assert float(down) == 0.0
  # ...one that wants it up does, so a parameter stuck at the bound can recover
  assert float(up) == -1.0
  assert float(grads(jnp.float32(2.0))[0]) == 1.0
