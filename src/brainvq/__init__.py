"""brainvq: discrete-latent generative models (VQ-VAE + priors) of brain MRI slices.

    from brainvq import Config, load_run, run
    result = run("default", "runs/demo", Config())   # the whole job: train, sample, evaluate
    r = load_run("runs/demo")            # config + VQ-VAE from safetensors, no code unpickled
    codes = r.vqvae.encode(images)       # (B, 1, H, W) in [0, 1] -> (B, H/4, W/4) int64
    images = r.vqvae.decode(codes)

The names below are imported from their modules on first use (PEP 562), so that `import brainvq`
and `brainvq --help` do not load torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "Config": "brainvq.config",
    "DataConfig": "brainvq.config",
    "TrainConfig": "brainvq.config",
    "VQVAEConfig": "brainvq.config",
    "PriorConfig": "brainvq.config",
    "BrainVQError": "brainvq.errors",
    "ConfigError": "brainvq.errors",
    "DataError": "brainvq.errors",
    "RunError": "brainvq.errors",
    "VectorQuantizer": "brainvq.nn.quantizer",
    "VQVAE": "brainvq.nn.vqvae",
    "Encoder": "brainvq.nn.vqvae",
    "Decoder": "brainvq.nn.vqvae",
    "ResidualBlock": "brainvq.nn.vqvae",
    "Run": "brainvq.runs",
    "load_run": "brainvq.runs",
    "load_vqvae": "brainvq.runs",
    "load_prior": "brainvq.priors",
    "run": "brainvq.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'brainvq' has no attribute {name!r}")
