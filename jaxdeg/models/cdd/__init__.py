"""The universal degradation model (content–degradation disentanglement), NHWC Flax Linen.

HDEN/IDEN encode the degradation of an image y (global vector, local map), the compressors
squeeze content out of those embeddings, and the VUNet generator with IDA-SFT layers puts the
degradation on a clean image x. MoCo helpers train HDEN contrastively; the critic is the WGAN-GP
discriminator. Weight import from the official PyTorch checkpoints: `jaxdeg.interop.cdd_torch`.
"""
from jaxdeg.models.cdd.compressors import GlobalCompressor, LocalCompressor, ResidualMLP
from jaxdeg.models.cdd.critic import Critic
from jaxdeg.models.cdd.entropy import GDN, IGDN, BitEstimator, EntropyBottleneck, global_rate, local_rate
from jaxdeg.models.cdd.generator import IDA, IDASFT, Generator, SFTResBlock
from jaxdeg.models.cdd.hden import HDEN, ConvBlock
from jaxdeg.models.cdd.iden import IDEN
from jaxdeg.models.cdd.model import DegradationModel, Embeddings
from jaxdeg.models.cdd.norm import TorchBatchNorm

__all__ = ["BitEstimator", "ConvBlock", "Critic", "DegradationModel", "Embeddings", "EntropyBottleneck", "GDN",
           "Generator", "GlobalCompressor", "HDEN", "IDA", "IDASFT", "IDEN", "IGDN", "LocalCompressor", "ResidualMLP",
           "SFTResBlock", "TorchBatchNorm", "global_rate", "local_rate"]
