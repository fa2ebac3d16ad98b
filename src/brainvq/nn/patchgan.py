"""A patch discriminator and the losses of adversarial autoencoder training, as in VQGAN.

VQGAN (Esser, Rombach, Ommer, CVPR 2021) gives a VQ autoencoder the texture of real images by
adding a patch discriminator on its reconstructions: the PatchGAN of pix2pix (Isola et al., CVPR
2017), which scores every overlapping patch of an image as real or reconstructed, so it judges
texture rather than layout. The autoencoder's adversarial term is weighted adaptively: the ratio
of the gradient norms of the image loss and of the adversarial loss at the decoder's last layer
(VQGAN, eq. 7), so that neither term drowns the other whatever their scales.

Reads top to bottom: PatchDiscriminator, hinge losses, adaptive_weight, and adversarial_losses,
which puts them together for a training step (the VQ-VAE stage and decoder tuning). Images are
float (B, 1, H, W) in [0, 1]; a discriminator returns one logit per patch, (B, 1, h, w).

Unlike VQGAN's discriminator (batch norm), this one uses spectral norm (Miyato et al., 2018): no
batch statistics, so it behaves the same in training and evaluation, at any batch size and on
every DDP rank. It shares nothing with the fixed classifier of the two-sample test
(brainvq.evaluation.c2st), which must stay independent of anything the models are trained against.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

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


@contextmanager
def frozen(module: nn.Module):
    """Within the block no gradient reaches the module's parameters (they enter the graph as
    constants); their requires_grad flags come back after."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


@dataclass
class AdversarialLosses:
    """One step's adversarial terms: ``total`` (weight * g_loss + d_loss) is what to add to the
    autoencoder's loss; the rest is for the log."""

    total: torch.Tensor
    d_loss: torch.Tensor
    g_loss: torch.Tensor
    weight: torch.Tensor  # the adaptive weight times the configured one
    d_real: torch.Tensor  # mean patch logit on the real images
    d_fake: torch.Tensor  # ... and on the decoded ones


def adversarial_losses(
    disc: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    image_loss: torch.Tensor,
    last_layer: torch.Tensor,
    weight: float,
) -> AdversarialLosses:
    """The autoencoder's adversarial loss, weighted by ``weight`` times the adaptive weight, plus
    the discriminator's hinge loss, for one batch of real images and the decoder's images of them.

    One backward pass of ``total`` trains both sides, each only on its own loss: the discriminator
    is frozen while it scores ``fake`` for the autoencoder, and sees ``fake`` detached for its own
    loss. It runs in float32 with autocast off (on the development CPU a small one is faster so
    than in bf16, and spectral norm's power iteration keeps its precision)."""
    with frozen(disc), torch.autocast(real.device.type, enabled=False):
        g_loss = hinge_g_loss(disc(fake.float()))
    w = weight * adaptive_weight(image_loss, g_loss, last_layer)
    with torch.autocast(real.device.type, enabled=False):
        d_real, d_fake = disc(torch.cat([real.float(), fake.detach().float()])).chunk(2)
    d_loss = hinge_d_loss(d_real, d_fake)
    return AdversarialLosses(
        w * g_loss + d_loss, d_loss, g_loss, w, d_real.float().mean(), d_fake.float().mean()
    )


def log_adversarial(module, losses: AdversarialLosses) -> None:
    """Log one step's adversarial terms from a LightningModule (d_loss on the progress bar)."""
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "weight"):
        label = "adv_weight" if name == "weight" else name
        value = getattr(losses, name)
        module.log(label, value, prog_bar=name == "d_loss", on_epoch=True, sync_dist=True)
