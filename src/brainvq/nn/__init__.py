"""Pure nn.Modules (no I/O): the vector quantizer and the VQ-VAE."""

from brainvq.nn.quantizer import QuantizerOutput, VectorQuantizer
from brainvq.nn.vqvae import VQVAE, Decoder, Encoder, ResidualBlock, VQVAEOutput

__all__ = [
    "VQVAE",
    "Decoder",
    "Encoder",
    "QuantizerOutput",
    "ResidualBlock",
    "VQVAEOutput",
    "VectorQuantizer",
]
