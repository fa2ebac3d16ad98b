"""The VQ-VAE of van den Oord et al. (2017): Encoder -> VectorQuantizer -> Decoder.

Reads top to bottom: ResidualBlock, Encoder, Decoder, VQVAE. Images are float (B, 1, H, W) in
[0, 1]; code maps are int64 (B, H/f, W/f) for a downsampling factor f of 4 or 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from brainvq.config import VQVAEConfig
from brainvq.metrics import ssim
from brainvq.nn.quantizer import VectorQuantizer


class ResidualBlock(nn.Module):
    """ReLU, 3x3 conv, ReLU, 1x1 conv, plus the input (the paper's residual block)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _n_stages(downsample: int) -> int:
    n = int(math.log2(downsample))
    if 2**n != downsample or n < 1:
        raise ValueError(f"downsample must be a power of two, got {downsample}")
    return n


class Encoder(nn.Module):
    """Strided 4x4 convolutions down by `downsample`, a 3x3 conv, residual blocks, 1x1 to D."""

    def __init__(self, cfg: VQVAEConfig, in_channels: int = 1) -> None:
        super().__init__()
        n = _n_stages(cfg.downsample)
        widths = [max(cfg.hidden // 2 ** (n - 1 - i), 16) for i in range(n)]
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            layers.append(nn.Conv2d(prev, width, 4, stride=2, padding=1))
            if i < n - 1:
                layers.append(nn.ReLU())
            prev = width
        layers += [nn.ReLU(), nn.Conv2d(prev, cfg.hidden, 3, padding=1)]
        layers += [ResidualBlock(cfg.hidden, cfg.res_hidden) for _ in range(cfg.n_res_blocks)]
        layers += [nn.ReLU(), nn.Conv2d(cfg.hidden, cfg.code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Mirror of the encoder: 3x3 conv from D, residual blocks, transposed 4x4 convs up."""

    def __init__(self, cfg: VQVAEConfig, out_channels: int = 1) -> None:
        super().__init__()
        n = _n_stages(cfg.downsample)
        widths = [max(cfg.hidden // 2 ** (i + 1), 16) for i in range(n - 1)] + [out_channels]
        layers: list[nn.Module] = [nn.Conv2d(cfg.code_dim, cfg.hidden, 3, padding=1)]
        layers += [ResidualBlock(cfg.hidden, cfg.res_hidden) for _ in range(cfg.n_res_blocks)]
        layers.append(nn.ReLU())
        prev = cfg.hidden
        for i, width in enumerate(widths):
            layers.append(nn.ConvTranspose2d(prev, width, 4, stride=2, padding=1))
            if i < n - 1:
                layers.append(nn.ReLU())
            prev = width
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class VQVAEOutput:
    """Reconstruction and the quantizer's report for one batch."""

    recon: torch.Tensor
    codes: torch.Tensor
    vq_loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


class VQVAE(nn.Module):
    """Encoder, vector quantizer and decoder; `encode` gives code maps, `decode` images."""

    def __init__(self, cfg: VQVAEConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or VQVAEConfig()
        self.encoder = Encoder(self.cfg)
        self.quantizer = VectorQuantizer(
            self.cfg.codebook_size,
            self.cfg.code_dim,
            beta=self.cfg.beta,
            ema=self.cfg.ema,
            decay=self.cfg.ema_decay,
            dead_code_threshold=self.cfg.dead_code_threshold,
            kmeans_init=self.cfg.kmeans_init,
            kmeans_iters=self.cfg.kmeans_iters,
        )
        self.decoder = Decoder(self.cfg)

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        """Reconstruct x (B, 1, H, W); the recon is unclamped so the loss sees its overshoot."""
        q = self.quantizer(self.encoder(x))
        recon = self.decoder(q.quantized)
        return VQVAEOutput(recon, q.codes, q.loss, q.perplexity, q.usage)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, H, W) in [0, 1] -> code maps (B, h, w) int64."""
        z = self.encoder(x).float()
        b, d, h, w = z.shape
        return self.quantizer.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, batch_size: int = 0) -> torch.Tensor:
        """Code maps (B, h, w) int64 -> images (B, 1, H, W) clamped to [0, 1], ``batch_size``
        maps at a time (0 = all at once)."""
        if not batch_size or len(codes) <= batch_size:
            return self.decode_latents(self.quantizer.lookup(codes)).clamp(0, 1)
        return torch.cat(
            [self.decode(codes[i : i + batch_size]) for i in range(0, len(codes), batch_size)]
        )

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Embedded code maps (B, D, h, w) -> raw decoder output (differentiable)."""
        return self.decoder(latents)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encode then decode, clamped to [0, 1]."""
        return self.decode(self.encode(x))

    def code_shape(self, image_size: int) -> tuple[int, int]:
        """Side of the code map for a square image of `image_size`."""
        return (image_size // self.cfg.downsample, image_size // self.cfg.downsample)


def recon_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error in float32."""
    return F.mse_loss(recon.float(), x.float())


def image_loss(
    recon: torch.Tensor, x: torch.Tensor, ssim_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The image term of VQ-VAE training, MSE + ssim_weight * (1 - SSIM), and the MSE alone."""
    mse = recon_loss(recon, x)
    if ssim_weight <= 0:
        return mse, mse
    return mse + ssim_weight * (1 - ssim(recon.float(), x.float()).mean()), mse
