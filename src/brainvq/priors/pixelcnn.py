"""The gated PixelCNN prior (brainvq.nn.pixelcnn); settings in ``prior.pixelcnn``."""

from __future__ import annotations

import torch

from brainvq.config import PixelCNNConfig
from brainvq.nn.pixelcnn import GatedPixelCNN
from brainvq.priors.base import AutoregressivePrior


class PixelCNNPrior(AutoregressivePrior):
    """The gated PixelCNN prior (van den Oord et al., 2016; the VQ-VAE paper's prior)."""

    kind = "pixelcnn"

    def __init__(self, cfg: PixelCNNConfig, codebook: torch.Tensor, code_size: int) -> None:
        net = GatedPixelCNN(codebook.shape[0], cfg.channels, cfg.layers, cfg.kernel)
        super().__init__(net, codebook, code_size)

    def _draw(self, n: int, pick, generator, progress) -> torch.Tensor:
        return self.net.sample(n, (self.code_size, self.code_size), pick, progress)
