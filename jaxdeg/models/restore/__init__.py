"""All-in-one image restoration models (NHWC, Flax Linen) and tiled full-resolution inference."""
from jaxdeg.models.restore.nafnet import NAFBlock, NAFNet
from jaxdeg.models.restore.promptir import PromptGenBlock, PromptIR, TransformerBlock
from jaxdeg.models.restore.tiling import tiled_apply

__all__ = ["NAFBlock", "NAFNet", "PromptGenBlock", "PromptIR", "TransformerBlock", "tiled_apply"]
