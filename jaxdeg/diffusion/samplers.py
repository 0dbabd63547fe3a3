"""Samplers for discrete-time ε/v-prediction models, each one `lax.scan` (compiled once under jit).

The model is a pure function `model_fn(x_t, t) -> output`, with x_t on the usual DDPM scale
(√ᾱ·x_0 + √(1−ᾱ)·ε) and t a float scalar timestep; close over parameters and conditioning (or use
`jaxdeg.diffusion.guidance`). Internally every sampler works in the σ form x = x_0 + σ·ε
(x = x_t·√(1+σ²)) on a grid σ_0 > … > σ_{n−1} > σ_n = 0, and returns x at σ = 0, i.e. x̂_0.

- `euler_ancestral`: diffusers' EulerAncestralDiscreteScheduler. σ from ᾱ at the inference
  timesteps; spacing 'linspace' (default; float timesteps, σ interpolated linearly as diffusers, or
  in log σ as k-diffusion with `interp='log'` — what GenDeg samples with) or 'leading'; model input
  scaled by 1/√(σ²+1); initial noise scaled by σ_0 ('linspace'/'trailing') or √(σ_0²+1) ('leading'),
  as diffusers' `init_noise_sigma`. Step: x ← x̂_0 + σ_down·ε̂ + σ_up·z.
- `ddim`: DDIM (Song et al.) with η; in σ form its update is the same as the ancestral step with
  σ_up = η·σ_next·√(1 − σ_next²/σ²), so η = 1 is Euler-ancestral on DDIM's grid. Timesteps are
  integers ('leading' by default, as SD's DDIM), the final step goes to ᾱ = 1.
- `dpmpp_2m`: DPM-Solver++(2M) (Lu et al. 2022), data prediction, second-order multistep with a
  first-order first and last step (diffusers' `lower_order_final`).
"""
import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg.diffusion.parametrization import to_eps_x0
from jaxdeg.diffusion.schedules import inference_timesteps


def sigma_grid(schedule, num_steps, spacing="linspace", interp="linear", steps_offset=0, integer=False):
  """(timesteps (n,), sigmas (n + 1,) ending in 0) as float32 numpy."""
  t = inference_timesteps(schedule.num_train_timesteps, num_steps, spacing, steps_offset)
  if integer:
    t = np.round(t)
  sig = np.asarray(schedule.sigma_at(t, interp), np.float64)
  return t.astype(np.float32), np.concatenate([sig, [0.0]]).astype(np.float32)


def denoiser(model_fn, prediction="epsilon"):
  """σ-form wrapper: (x, σ, t) → (ε̂, x̂_0), calling the model on x/√(σ²+1)."""
  def den(x, sigma, t):
    x_t = x / jnp.sqrt(sigma ** 2 + 1)
    out = model_fn(x_t, t).astype(jnp.float32)
    return to_eps_x0(prediction, out, x_t, 1.0 / (1.0 + sigma ** 2))
  return den


def _is_key_batch(key):
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  return key.ndim == (1 if typed else 2)


def _noise_fn(key, step_noise, shape):
  if step_noise is not None:
    return lambda i: step_noise[i]
  if key is None:
    raise ValueError("a stochastic sampler needs `key` (or `step_noise`)")
  if _is_key_batch(key):
    # one key per example: each sample is independent of what else is in the batch
    if key.shape[0] != shape[0]:
      raise ValueError(f"{key.shape[0]} keys for a batch of {shape[0]}")
    return lambda i: jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), shape[1:], jnp.float32))(key)
  return lambda i: jax.random.normal(jax.random.fold_in(key, i), shape, jnp.float32)


def _ancestral(den, x, timesteps, sigmas, eta, key, step_noise):
  noise = _noise_fn(key, step_noise, x.shape) if eta > 0 else (lambda i: jnp.zeros_like(x))

  def step(x, i):
    s, s_next = sigmas[i], sigmas[i + 1]
    eps, x0 = den(x, s, timesteps[i])
    up = jnp.minimum(s_next, eta * jnp.sqrt(jnp.maximum(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2, 0.0)))
    down = jnp.sqrt(jnp.maximum(s_next ** 2 - up ** 2, 0.0))
    return x0 + down * eps + up * noise(i), None

  x, _ = jax.lax.scan(step, x, jnp.arange(len(timesteps)))
  return x


def _init(noise, sigma0, init):
  if init == "sigma":
    return noise * sigma0
  if init == "vp":
    return noise * np.sqrt(sigma0 ** 2 + 1)
  raise ValueError(f"unknown init {init!r}; choose 'sigma' or 'vp'")


def euler_ancestral(model_fn, noise, key, schedule, num_steps=100, *, prediction="epsilon", spacing="linspace",
                    interp="linear", steps_offset=0, eta=1.0, init=None, step_noise=None):
  """Euler-ancestral sampling from initial standard-normal `noise` (the shape of a sample).
  `key` is one key, or one per example (leading batch axis: per-example step noise, so a sample
  does not depend on its batch). `step_noise` (num_steps, *shape) replaces the per-step draws
  (to reproduce another sampler's)."""
  t, s = sigma_grid(schedule, num_steps, spacing, interp, steps_offset)
  init = init or ("vp" if spacing == "leading" else "sigma")
  x = _init(noise.astype(jnp.float32), s[0], init)
  return _ancestral(denoiser(model_fn, prediction), x, jnp.asarray(t), jnp.asarray(s), eta, key, step_noise)


def ddim(model_fn, noise, key=None, schedule=None, num_steps=50, *, prediction="epsilon", eta=0.0,
         spacing="leading", steps_offset=0, step_noise=None):
  """DDIM from `noise`; deterministic for η = 0 (then `key` may be None)."""
  t, s = sigma_grid(schedule, num_steps, spacing, "linear", steps_offset, integer=True)
  x = _init(noise.astype(jnp.float32), s[0], "vp")
  return _ancestral(denoiser(model_fn, prediction), x, jnp.asarray(t), jnp.asarray(s), eta, key, step_noise)


def dpmpp_2m(model_fn, noise, schedule, num_steps=25, *, prediction="epsilon", spacing="linspace", steps_offset=0):
  """DPM-Solver++(2M), deterministic, from `noise`. Timesteps as diffusers' DPMSolverMultistep
  ('linspace': n + 1 rounded points from T−1 to 0, the last dropped)."""
  T = schedule.num_train_timesteps
  if not 1 <= num_steps < T:
    raise ValueError(f"dpmpp_2m: num_steps must be in [1, {T - 1}], got {num_steps}")
  if spacing == "linspace":
    t = np.linspace(0, T - 1, num_steps + 1).round()[::-1][:-1].astype(np.float32)
    s = np.concatenate([np.asarray(schedule.sigma_at(t)), [0.0]]).astype(np.float32)
  else:
    t, s = sigma_grid(schedule, num_steps, spacing, "linear", steps_offset, integer=True)
  den = denoiser(model_fn, prediction)
  x = _init(noise.astype(jnp.float32), s[0], "vp")
  sig, t = jnp.asarray(s), jnp.asarray(t)
  lam = -jnp.log(jnp.maximum(sig, 1e-30))  # λ = log(α/σ) = −log σ in σ form

  def step(carry, i):
    x, prev_x0 = carry
    _, x0 = den(x, sig[i], t[i])
    last = sig[i + 1] == 0
    h = jnp.where(last, 1.0, lam[i + 1] - lam[i])
    first_order = (i == 0) | last
    r = jnp.where(first_order, 1.0, (lam[i] - lam[jnp.maximum(i - 1, 0)]) / h)
    d = jnp.where(first_order, x0, (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0)
    x_next = jnp.where(last, d, (sig[i + 1] / sig[i]) * x - jnp.expm1(-h) * d)
    return (x_next, x0), None

  (x, _), _ = jax.lax.scan(step, (x, jnp.zeros_like(x)), jnp.arange(len(t)))
  return x


SAMPLERS = {"euler_ancestral": euler_ancestral, "ddim": ddim, "dpmpp_2m": dpmpp_2m}


def sample(method, model_fn, noise, key, schedule, num_steps, **options):
  """Dispatch by name: 'euler_ancestral', 'ddim' or 'dpmpp_2m'."""
  if method not in SAMPLERS:
    raise ValueError(f"unknown sampler {method!r}; choose one of {', '.join(SAMPLERS)}")
  if method == "dpmpp_2m":
    return dpmpp_2m(model_fn, noise, schedule, num_steps, **options)
  return SAMPLERS[method](model_fn, noise, key, schedule, num_steps, **options)
