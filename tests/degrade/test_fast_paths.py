"""The fast formulations equal the straightforward ones they replace, to float rounding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import degrade
from jaxdeg.degrade import _ops, registry
from jaxdeg.degrade.rain import sinc_along


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.7, 32.0, 51.2])
def test_sinc_along_equals_the_per_element_sinc(scale):
  shape = (64, 48)
  fy = np.fft.fftfreq(shape[0])[:, None]
  fx = np.fft.rfftfreq(shape[1])[None, :]
  for angle in (-0.55, -0.1, 0.0, 0.2, 0.5):
    along = fx * np.sin(angle) + fy * np.cos(angle)
    ref = np.sinc(scale * along)  # float64
    got = np.asarray(sinc_along(shape, scale, jnp.float32(angle)))
    assert np.abs(got - ref).max() < 1e-5, (scale, angle)


def test_chunked_batches_equal_one_vmap(monkeypatch):
  """apply's CPU path (a loop over vmapped chunks, with a remainder) against one vmap of the batch."""
  imgs = jax.random.uniform(jax.random.key(1), (5, 32, 32, 3))
  intens = jnp.linspace(0.1, 0.9, 5)
  run = lambda: jax.jit(lambda k, x, t: degrade.apply(k, x, "speckle_noise", t))(jax.random.key(2), imgs, intens)
  monkeypatch.setattr(registry, "CPU_CHUNK_PIXELS", 2 * 32 * 32)
  chunked, params = run()
  monkeypatch.setattr(registry, "CPU_CHUNK_PIXELS", 10 ** 9)
  whole, params_whole = run()
  assert chunked.shape == whole.shape == imgs.shape
  assert float(jnp.abs(chunked - whole).max()) < 1e-6
  for k in params:
    np.testing.assert_allclose(params[k], params_whole[k], rtol=1e-6)


def test_erf_inv_equals_lax_erf_inv_on_every_uniform_level():
  """The normal fields' erf_inv (log instead of log1p) against lax.erf_inv on all 2^24 levels the
  hashed uniforms take (strided sample plus both ends): within 2e-5, infinities alike."""
  levels = jnp.concatenate([jnp.arange(0, 1 << 24, 97, dtype=jnp.uint32),
                            jnp.arange((1 << 24) - 64, 1 << 24, dtype=jnp.uint32)])
  x = 2.0 * _ops._unit(levels << 8) - 1.0
  ref = np.asarray(jax.lax.erf_inv(x), np.float64)
  got = np.asarray(jax.jit(_ops._erf_inv)(x), np.float64)
  finite = np.isfinite(ref)
  assert np.array_equal(np.isinf(got), ~finite) and np.array_equal(got[~finite], ref[~finite])
  assert np.abs(got[finite] - ref[finite]).max() < 2e-5
