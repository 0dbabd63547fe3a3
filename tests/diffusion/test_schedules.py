"""Schedules and prediction-type conversions (numpy-level; diffusers as the reference)."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.diffusion import inference_timesteps, make_schedule, parametrization as P
from jaxdeg.diffusion.schedules import betas_for


def test_sd_schedule_values():
  s = make_schedule()
  assert s.num_train_timesteps == 1000
  np.testing.assert_allclose(s.betas[[0, -1]], [0.00085, 0.012], rtol=1e-12)
  # SD-1.x's σ range: 0.0292 … 14.61
  np.testing.assert_allclose(s.sigmas[[0, -1]], [0.029168, 14.614646], rtol=1e-4)
  # fractional timesteps: linear vs log-σ interpolation agree on the grid, differ between
  np.testing.assert_allclose(s.sigma_at(np.array([10.0])), s.sigmas[10])
  np.testing.assert_allclose(s.sigma_at(np.array([10.0]), "log"), s.sigmas[10])
  assert s.sigma_at(10.5, "log") < s.sigma_at(10.5, "linear")
  np.testing.assert_allclose(s.sigma_at(jnp.array([10.5])), s.sigma_at(np.array([10.5])), rtol=1e-5)


def test_matches_diffusers_betas_and_timesteps():
  import diffusers  # noqa: F401
  from diffusers import EulerAncestralDiscreteScheduler
  for kind, name in [("scaled_linear", "scaled_linear"), ("linear", "linear"), ("cosine", "squaredcos_cap_v2")]:
    ref = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule=name)
    np.testing.assert_allclose(betas_for(kind), ref.betas.numpy(), rtol=2e-6, atol=1e-9)
  for spacing, offset in [("linspace", 0), ("leading", 1), ("trailing", 0)]:
    ref = EulerAncestralDiscreteScheduler(timestep_spacing=spacing, steps_offset=offset)
    for n in (7, 50):
      ref.set_timesteps(n)
      np.testing.assert_allclose(inference_timesteps(1000, n, spacing, offset), ref.timesteps.numpy(), rtol=1e-6)


def test_prediction_conversions_round_trip():
  rng = np.random.default_rng(0)
  x0, eps = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
  ab = np.array([0.9, 0.05])
  x_t = np.sqrt(ab)[:, None] * x0 + np.sqrt(1 - ab)[:, None] * eps
  v = P.v_from(x0, eps, ab)
  for kind, out in [("epsilon", eps), ("v_prediction", v), ("sample", x0)]:
    e, x = P.to_eps_x0(kind, out, x_t, ab)
    np.testing.assert_allclose(e, eps, atol=1e-5)
    np.testing.assert_allclose(x, x0, atol=1e-5)
    np.testing.assert_allclose(P.training_target(kind, x0, eps, ab), out, atol=1e-6)
  with pytest.raises(ValueError, match="prediction"):
    P.to_eps_x0("mu", eps, x_t, ab)
  with pytest.raises(ValueError, match="spacing"):
    inference_timesteps(1000, 10, "karras")
