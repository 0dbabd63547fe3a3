"""GenDeg's latent diffusion model parts: SD KL-VAE, SD-1.x conditional UNet, degradation context."""
from jaxdeg.models.ldm.conditioning import DEGRADATION_TYPES, DegradationContext
from jaxdeg.models.ldm.unet import UNet
from jaxdeg.models.ldm.vae import AutoencoderKL

__all__ = ["AutoencoderKL", "UNet", "DegradationContext", "DEGRADATION_TYPES"]
