"""Conversions between what a diffusion model predicts (ε, v, x_0) given x_t and ᾱ_t.

v = √ᾱ·ε − √(1−ᾱ)·x_0 (Salimans & Ho 2022). All functions broadcast ᾱ against x."""
import jax.numpy as jnp

PREDICTIONS = ("epsilon", "v_prediction", "sample")


def _ab(alpha_bar, x):
  a = jnp.asarray(alpha_bar, jnp.float32)
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def x0_from_eps(x_t, eps, alpha_bar):
  a = _ab(alpha_bar, x_t)
  return (x_t - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)


def eps_from_x0(x_t, x0, alpha_bar):
  a = _ab(alpha_bar, x_t)
  return (x_t - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)


def v_from(x0, eps, alpha_bar):
  a = _ab(alpha_bar, x0)
  return jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0


def eps_from_v(x_t, v, alpha_bar):
  a = _ab(alpha_bar, x_t)
  return jnp.sqrt(a) * v + jnp.sqrt(1 - a) * x_t


def x0_from_v(x_t, v, alpha_bar):
  a = _ab(alpha_bar, x_t)
  return jnp.sqrt(a) * x_t - jnp.sqrt(1 - a) * v


def to_eps_x0(prediction, out, x_t, alpha_bar):
  """(ε̂, x̂_0) from a model output of kind `prediction`."""
  if prediction == "epsilon":
    return out, x0_from_eps(x_t, out, alpha_bar)
  if prediction == "v_prediction":
    return eps_from_v(x_t, out, alpha_bar), x0_from_v(x_t, out, alpha_bar)
  if prediction == "sample":
    return eps_from_x0(x_t, out, alpha_bar), out
  raise ValueError(f"unknown prediction type {prediction!r}; choose one of {PREDICTIONS}")


def training_target(prediction, x0, noise, alpha_bar):
  """What the model should output for x_t = √ᾱ·x_0 + √(1−ᾱ)·noise."""
  if prediction == "epsilon":
    return noise
  if prediction == "v_prediction":
    return v_from(x0, noise, alpha_bar)
  if prediction == "sample":
    return x0
  raise ValueError(f"unknown prediction type {prediction!r}; choose one of {PREDICTIONS}")
