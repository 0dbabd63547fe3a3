"""The composite recipes (Real-ESRGAN, BSRGAN, WQI, mixtures) under the families' contract.

Eager runs are left to the families they compose (an eager pipeline costs ~20 s of per-op
compiles); the grid below still checks range, identity at 0, monotone damage and key dependence.
"""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.metrics.image_quality import psnr
from tests.degrade.test_families import PIPELINES, SIZE, grid, photos


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_contract(name):
  out, params = grid(name)
  assert out.dtype == np.float32 and out.shape[-3:] == (SIZE, SIZE, 3)
  assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
  clean = photos()[:, None]
  assert float(jnp.min(psnr(out[:, :, 0], clean))) >= 50.0
  mean_psnr = np.asarray(psnr(out[:, :, 1:], clean[:, :, None])).mean(axis=(0, 1))
  assert mean_psnr[0] > mean_psnr[1] > mean_psnr[2], mean_psnr
  strongest = out[:, :, -1]
  assert max(np.abs(strongest[:, i] - strongest[:, j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 1e-3


def test_realesrgan_resizes_within_published_ranges():
  _, params = grid("realesrgan")
  full = np.asarray(params["scale1"]).reshape(2, 3, 4)[..., -1]
  assert ((full >= 0.15) & (full <= 1.5)).all()
  assert ((np.asarray(params["scale2"]).reshape(2, 3, 4)[..., -1] >= 0.3)).all()


def test_mixture_applies_exactly_k_types():
  _, params = grid("mixture")
  assert (np.asarray(params["chosen"]).sum(-1) == 2).all()


def test_bsrgan_order_is_a_permutation():
  _, params = grid("bsrgan")
  order = np.sort(np.asarray(params["order"]), axis=-1)
  assert (order == np.arange(8)).all()
