"""Samplers: step-by-step against diffusers' schedulers, and on a Gaussian data distribution
N(m, s²) whose exact ε-predictor is known in closed form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.diffusion import ddim, dpmpp_2m, euler_ancestral, make_schedule, parametrization as P, sample

SCHEDULE = make_schedule()
M, S = 0.5, 1.0  # data N(M, S²); S = 1 is the scale SD latents are normalised to
N = 20_000


def exact_model(interp="linear", prediction="epsilon"):
  """E[ε | x_t] (or the matching v) for data N(M, S²): the ideal denoiser."""
  def model_fn(x, t):
    ab = SCHEDULE.alpha_bar_at(t, interp)
    eps = jnp.sqrt(1 - ab) * (x - jnp.sqrt(ab) * M) / (ab * S * S + 1 - ab)
    return eps if prediction == "epsilon" else P.v_from(P.x0_from_eps(x, eps, ab), eps, ab)
  return model_fn


def exact_ode(noise):
  """Where the probability-flow ODE takes x_T = noise: SD's schedule ends at ᾱ_T ≈ 0.0047, not 0,
  so N(0, 1) at T maps to a slightly shifted Gaussian, sample by sample."""
  ab = SCHEDULE.alphas_cumprod[-1]
  return M + S * (noise - np.sqrt(ab) * M) / np.sqrt(ab * S * S + 1 - ab)


@pytest.fixture(scope="module")
def noise():
  return jax.random.normal(jax.random.key(0), (N,))


def test_euler_ancestral_gaussian(noise):
  # ancestral sampling forgets the start: the samples are N(M, S²) up to an O(1/steps) shrinkage
  x = jax.jit(lambda n, k: euler_ancestral(exact_model(), n, k, SCHEDULE, 200))(noise, jax.random.key(1))
  assert abs(float(x.mean()) - M) < 0.02, float(x.mean())
  assert abs(float(x.std()) - S) < 0.03, float(x.std())


def test_ddim_gaussian_follows_the_ode(noise):
  x = jax.jit(lambda n: ddim(exact_model(), n, None, SCHEDULE, 100))(noise)
  ref = exact_ode(np.asarray(noise))
  assert float(np.abs(np.asarray(x) - ref).max()) < 0.08  # first order: 0.057 at 100 steps
  assert abs(float(x.mean()) - ref.mean()) < 0.005 and abs(float(x.std()) - ref.std()) < 0.02


def test_dpmpp_2m_gaussian_follows_the_ode_with_v_prediction(noise):
  run = jax.jit(lambda n: (dpmpp_2m(exact_model(), n, SCHEDULE, 50),
                           dpmpp_2m(exact_model(prediction="v_prediction"), n, SCHEDULE, 50, prediction="v_prediction")))
  x, xv = run(noise)
  ref = exact_ode(np.asarray(noise))
  assert float(np.abs(np.asarray(x) - ref).max()) < 0.05  # 0.031 at 50 steps (DDIM: 0.11)
  assert abs(float(x.mean()) - ref.mean()) < 0.005 and abs(float(x.std()) - ref.std()) < 0.01
  assert float(jnp.abs(xv - x).max()) < 1e-3


def test_sampling_loop_traces_the_model_once(noise):
  calls = []

  def model_fn(x, t):
    calls.append(1)
    return exact_model()(x, t)
  out = jax.jit(lambda n, k: sample("euler_ancestral", model_fn, n, k, SCHEDULE, 30))(noise[:8], jax.random.key(0))
  assert out.shape == (8,) and len(calls) == 1
  with pytest.raises(ValueError, match="unknown sampler"):
    sample("heun", model_fn, noise, None, SCHEDULE, 10)


# --- step by step against diffusers, on the same model outputs and injected noise --------------

SHAPE = (2, 3, 4, 4)


def fake_np(x, t):
  return 0.9 * np.tanh(0.7 * x + t / 1000.0)


def fake(x, t):
  return 0.9 * jnp.tanh(0.7 * x + t / 1000.0)


def _run_diffusers(sched, init, steps, step_kwargs=None, noise_gen=None):
  import torch
  sched.set_timesteps(steps)
  x = init * sched.init_noise_sigma
  noises = []
  for t in sched.timesteps:
    inp = sched.scale_model_input(x, t)
    out = torch.from_numpy(fake_np(inp.numpy(), float(t)).astype(np.float32))
    kw = dict(step_kwargs or {})
    if noise_gen is not None:  # replay the generator to know the noise the step draws
      kw["generator"] = noise_gen[0]
      noises.append(torch.randn(x.shape, generator=noise_gen[1]).numpy())
    x = sched.step(out, t, x, **kw).prev_sample
  return x.numpy(), noises


@pytest.fixture(scope="module")
def torch_init():
  import torch
  import diffusers  # noqa: F401
  return torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("spacing", ["linspace", "leading"])
def test_euler_ancestral_matches_diffusers(torch_init, spacing):
  import torch
  from diffusers import EulerAncestralDiscreteScheduler
  sched = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                          timestep_spacing=spacing)
  gens = (torch.Generator().manual_seed(0), torch.Generator().manual_seed(0))
  ref, noises = _run_diffusers(sched, torch_init, 20, noise_gen=gens)
  ours = euler_ancestral(fake, jnp.asarray(torch_init.numpy()), None, SCHEDULE, 20, spacing=spacing,
                         step_noise=jnp.asarray(np.stack(noises)))
  assert float(np.abs(np.asarray(ours) - ref).max() / np.abs(ref).max()) < 1e-5


def test_ddim_and_dpmpp_2m_match_diffusers(torch_init):
  from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
  kw = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
  ref, _ = _run_diffusers(DDIMScheduler(**kw, set_alpha_to_one=True, steps_offset=1, clip_sample=False), torch_init, 20)
  ours = ddim(fake, jnp.asarray(torch_init.numpy()), None, SCHEDULE, 20, steps_offset=1)
  assert float(np.abs(np.asarray(ours) - ref).max() / np.abs(ref).max()) < 1e-5
  ref, _ = _run_diffusers(DPMSolverMultistepScheduler(**kw, final_sigmas_type="zero"), torch_init, 20)
  ours = dpmpp_2m(fake, jnp.asarray(torch_init.numpy()), SCHEDULE, 20)
  assert float(np.abs(np.asarray(ours) - ref).max() / np.abs(ref).max()) < 1e-5


def test_per_example_keys_make_samples_independent_of_their_batch():
  def model_fn(x, t):
    return 0.1 * x * (t / 1000.0)
  keys = jax.random.split(jax.random.key(3), 4)
  noise = jax.random.normal(jax.random.key(4), (4, 2, 2, 1))
  run = jax.jit(lambda n, k: euler_ancestral(model_fn, n, k, SCHEDULE, 10))
  whole = run(noise, keys)
  for b in range(4):
    np.testing.assert_allclose(np.asarray(run(noise[b:b + 1], keys[b:b + 1]))[0], np.asarray(whole)[b],
                               rtol=1e-6, atol=1e-6)
  assert not np.allclose(np.asarray(run(noise, keys[::-1])), np.asarray(whole))
  with pytest.raises(ValueError, match="3 keys for a batch of 4"):
    run(noise, keys[:3])
