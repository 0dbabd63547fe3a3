"""The fast formulations equal the straightforward ones they replace, to float rounding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import degrade
from jaxdeg.degrade import registry
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
