"""Noise schedules, prediction-type conversions, samplers and classifier-free guidance."""
from jaxdeg.diffusion import guidance, parametrization
from jaxdeg.diffusion.samplers import SAMPLERS, ddim, denoiser, dpmpp_2m, euler_ancestral, sample, sigma_grid
from jaxdeg.diffusion.schedules import Schedule, inference_timesteps, make_schedule

__all__ = ["Schedule", "make_schedule", "inference_timesteps", "sigma_grid", "denoiser", "euler_ancestral", "ddim",
           "dpmpp_2m", "sample", "SAMPLERS", "guidance", "parametrization"]
