"""Discrete-time noise schedules (DDPM / Stable Diffusion conventions).

x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε for integer t in [0, T). The samplers work in the equivalent
"σ" form of Karras et al.: x = x_0 + σ·ε with σ_t = √((1 − ᾱ_t)/ᾱ_t), x_σ = x_t·√(1 + σ²).
Tables are float64 numpy (they become constants under jit).
"""
import dataclasses
import math

import jax.numpy as jnp
import numpy as np


def betas_for(kind, num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012):
  """'scaled_linear' (SD: linear in √β), 'linear', or 'cosine' (Nichol & Dhariwal, β ≤ 0.999)."""
  T = num_train_timesteps
  if kind == "scaled_linear":
    return np.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=np.float64) ** 2
  if kind == "linear":
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)
  if kind == "cosine":
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], np.float64)
  raise ValueError(f"unknown beta schedule {kind!r}; choose scaled_linear, linear or cosine")


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
  betas: np.ndarray

  @property
  def num_train_timesteps(self):
    return len(self.betas)

  @property
  def alphas_cumprod(self):
    return np.cumprod(1.0 - self.betas)

  @property
  def sigmas(self):
    """σ_t for every integer t (increasing)."""
    ac = self.alphas_cumprod
    return np.sqrt((1 - ac) / ac)

  def sigma_at(self, t, interp="linear"):
    """σ at (possibly fractional) timesteps: 'linear' interpolates σ (diffusers' Euler schedulers),
    'log' interpolates log σ (k-diffusion, which GenDeg and InstructPix2Pix sample with).
    numpy in → float64 numpy out (for building grids under jit); jax in → float32 jax out."""
    if interp not in ("linear", "log"):
      raise ValueError(f"unknown sigma interpolation {interp!r}; choose linear or log")
    table = self.sigmas if interp == "linear" else np.log(self.sigmas)
    if isinstance(t, (int, float, np.ndarray, np.number)):
      out = np.interp(np.asarray(t, np.float64), np.arange(self.num_train_timesteps), table)
      return np.exp(out) if interp == "log" else out
    grid = jnp.arange(self.num_train_timesteps, dtype=jnp.float32)
    out = jnp.interp(jnp.asarray(t, jnp.float32), grid, jnp.asarray(table, jnp.float32))
    return jnp.exp(out) if interp == "log" else out

  def alpha_bar_at(self, t, interp="linear"):
    return 1.0 / (1.0 + self.sigma_at(t, interp) ** 2)

  def add_noise(self, x0, noise, t):
    """x_t for integer timesteps t (B,): the forward process used in training."""
    ac = jnp.asarray(self.alphas_cumprod, jnp.float32)[jnp.asarray(t, jnp.int32)]
    ac = ac.reshape(ac.shape + (1,) * (x0.ndim - ac.ndim))
    return jnp.sqrt(ac) * x0 + jnp.sqrt(1.0 - ac) * noise


def make_schedule(kind="scaled_linear", num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012):
  """Stable Diffusion's default: 1000 steps, scaled-linear β from 0.00085 to 0.012."""
  return Schedule(betas_for(kind, num_train_timesteps, beta_start, beta_end))


def inference_timesteps(num_train_timesteps, num_steps, spacing="linspace", steps_offset=0):
  """Decreasing timesteps for `num_steps` sampling steps, as diffusers' `timestep_spacing`:
  'linspace' (float, from T−1 down to 0), 'leading' (k·⌊T/n⌋ + offset), 'trailing'."""
  T, n = num_train_timesteps, num_steps
  if n < 1 or n > T:
    raise ValueError(f"num_steps must be in [1, {T}], got {n}")
  if spacing == "linspace":
    return np.linspace(0, T - 1, n, dtype=np.float64)[::-1].copy()
  if spacing == "leading":
    return (np.arange(n) * (T // n)).round()[::-1].astype(np.float64) + steps_offset
  if spacing == "trailing":
    return np.arange(T, 0, -T / n).round().astype(np.float64) - 1
  raise ValueError(f"unknown timestep spacing {spacing!r}; choose linspace, leading or trailing")
