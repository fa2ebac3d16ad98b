"""brainvq: discrete-latent generative models (VQ-VAE + priors) of brain MRI slices.

from brainvq import VQVAE, Config, load_run
run = load_run("runs/demo")          # config + VQ-VAE from safetensors, no code unpickled
codes = run.vqvae.encode(images)     # (B, 1, H, W) in [0, 1] -> (B, H/4, W/4) int64
images = run.vqvae.decode(codes)
"""

from brainvq.config import Config, DataConfig, TrainConfig, VQVAEConfig
from brainvq.errors import BrainVQError, ConfigError, DataError, RunError
from brainvq.nn.quantizer import VectorQuantizer
from brainvq.nn.vqvae import VQVAE, Decoder, Encoder, ResidualBlock
from brainvq.runs import Run, load_run, load_vqvae

__version__ = "0.1.0"

__all__ = [
    "VQVAE",
    "BrainVQError",
    "Config",
    "ConfigError",
    "DataConfig",
    "DataError",
    "Decoder",
    "Encoder",
    "ResidualBlock",
    "Run",
    "RunError",
    "TrainConfig",
    "VQVAEConfig",
    "VectorQuantizer",
    "load_run",
    "load_vqvae",
]
