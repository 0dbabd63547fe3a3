"""Generator randomness (a fresh z in every layer, reproducible per key), jit == eager, the
align-corners resize against torch, and the ablation/compatibility switches."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.models.cdd import Generator
from jaxdeg.models.cdd.ops import resize_bilinear_align_corners
from tests.models.restore.helpers import random_variables

TINY = dict(width=4, blocks=(1, 1, 1, 1, 1))


def key(seed):
  # rbg keys: threefry kernels (one per IDA-SFT layer) dominate XLA:CPU compile time
  return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="module")
def tiny():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  e_g = jnp.asarray(rng.normal(size=(2, 16)), jnp.float32)
  e_l = jnp.asarray(rng.uniform(size=(2, 8, 8, 4)), jnp.float32)
  generator = Generator(**TINY)
  v = random_variables(generator, x, e_g, e_l)
  sample = lambda v, k: generator.apply(v, x, e_g, e_l, rngs={"noise": k}, mutable=["intermediates"])
  return generator, v, (x, e_g, e_l), sample, jax.jit(sample)


def test_noise_key_decides_the_sample(tiny):
  generator, v, args, _, sample = tiny
  a, noise_a = sample(v, key(1))
  b, _ = sample(v, key(1))
  c, _ = sample(v, key(2))
  np.testing.assert_array_equal(a, b)
  assert float(jnp.abs(a - c).max()) > 1e-4
  # a different z in every layer: 5 blocks × 2 IDA-SFT layers, all distinct draws
  draws = [layer["noise"][0] for block in noise_a["intermediates"].values() for layer in block.values()]
  assert len(draws) == 10 and len({float(z.ravel()[0]) for z in draws}) == 10
  with pytest.raises(Exception, match="noise"):  # no key, no sample: the randomness is explicit
    jax.eval_shape(lambda v: generator.apply(v, *args), v)


def test_jit_equals_eager(tiny):
  _, v, _, eager, jitted = tiny
  np.testing.assert_allclose(eager(v, key(3))[0], jitted(v, key(3))[0], rtol=1e-5, atol=1e-5)


def test_align_corners_resize_matches_torch():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
  for size in [(10, 14), (3, 4), (1, 2), (5, 7), (9, 1)]:
    ours = np.asarray(resize_bilinear_align_corners(jnp.asarray(x), size))
    ref = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=size, mode="bilinear",
                                          align_corners=True).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
