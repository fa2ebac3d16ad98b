"""A patch discriminator and the losses of adversarial autoencoder training, as in VQGAN.

VQGAN (Esser, Rombach, Ommer, CVPR 2021) gives a VQ autoencoder the texture of real images by
adding a patch discriminator on its reconstructions: the PatchGAN of pix2pix (Isola et al., CVPR
2017), which scores every overlapping patch of an image as real or reconstructed, so it judges
texture rather than layout. The autoencoder's adversarial term is weighted adaptively: the ratio
of the gradient norms of the image loss and of the adversarial loss at the decoder's last layer
(VQGAN, eq. 7), so that neither term drowns the other whatever their scales.

Reads top to bottom: PatchDiscriminator, hinge losses, adaptive_weight. Images are float
(B, 1, H, W) in [0, 1]; a discriminator returns one logit per patch, (B, 1, h, w).

Unlike VQGAN's discriminator (batch norm), this one uses spectral norm (Miyato et al., 2018): no
batch statistics, so it behaves the same in training and evaluation, at any batch size and on
every DDP rank. It shares nothing with the fixed classifier of the two-sample test
(brainvq.evaluation.c2st), which must stay independent of anything the models are trained against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """PatchGAN: `layers` 4x4 stride-2 convolutions (channels doubling from `channels`, at most
    8x), a 4x4 stride-1 convolution, then a 4x4 convolution to one logit per patch; leaky ReLU
    (0.2) between, spectral norm on every convolution. Its patches see 70x70 pixels at 3 layers,
    34x34 at 2, 22x22 at 1."""

    def __init__(self, channels: int = 64, layers: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        if channels < 1 or layers < 1:
            raise ValueError(f"channels {channels} and layers {layers} must be >= 1")
        widths = [channels * min(2**i, 8) for i in range(layers + 1)]
        blocks: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            stride = 2 if i < layers else 1
            blocks += [
                spectral_norm(nn.Conv2d(prev, width, 4, stride=stride, padding=1)),
                nn.LeakyReLU(0.2),
            ]
            prev = width
        blocks.append(spectral_norm(nn.Conv2d(prev, 1, 4, stride=1, padding=1)))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> patch logits (B, 1, h, w): high means real."""
        return self.net(x)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss (Lim & Ye, 2017), halved as in VQGAN, in float32."""
    return 0.5 * (F.relu(1 - real.float()).mean() + F.relu(1 + fake.float()).mean())


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """The autoencoder's adversarial loss: minus the mean patch logit of its reconstructions."""
    return -fake.float().mean()


def adaptive_weight(
    image_loss: torch.Tensor,
    adversarial_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
) -> torch.Tensor:
    """VQGAN's adaptive weight: |grad image_loss| / (|grad adversarial_loss| + 1e-4) at the
    decoder's last layer, clamped to [0, max_weight], with no gradient of its own. Both losses
    keep their graphs."""
    g_image = torch.autograd.grad(image_loss, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adversarial_loss, last_layer, retain_graph=True)[0]
    weight = g_image.float().norm() / (g_adv.float().norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
