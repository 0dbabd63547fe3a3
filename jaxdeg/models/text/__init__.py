"""Text encoders (Flax modules only)."""
from jaxdeg.models.text.clip import CLIPTextTransformer

__all__ = ["CLIPTextTransformer"]
