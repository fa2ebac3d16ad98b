"""DCGAN (Radford et al., 2016) over VQ-VAE code maps: a Generator and a Discriminator.

The generator never outputs code *values* to be rounded (that collapses onto a handful of codes).
It makes a map of discrete codes in one of three ways, all differentiable end to end:

- design "snap" (``Generator(out_channels=D)``, the default): a continuous ``code_dim`` map, each
  vector snapped to its nearest codebook vector; the straight-through estimator (van den Oord et
  al., 2017) passes the discriminator's gradient to the continuous output unchanged. The cheapest
  on a CPU (bench/dcgan_step.py): no K-wide tensor is built except the nearest-code search's.
- design "gumbel" (``Generator(out_channels=K)``): logits over the K codes at each position,
  turned into a one-hot by straight-through Gumbel-softmax (Jang et al., 2017), then embedded
  with the codebook.
- design "distance" (``Generator(out_channels=D)``): as "gumbel", with the logits of a
  ``code_dim`` map's distances to the codes (brainvq.priors.dcgan).

Either way the discriminator sees embedded code maps (B, D, h, w): ``codebook[codes]``. Both nets
follow the code-map side ``size`` (a power of two, >= 4): the generator starts at 4x4 and doubles up
to ``size``; the discriminator halves down to 4x4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from brainvq.nn.quantizer import embed_codes


def _n_doublings(size: int) -> int:
    n = math.log2(size / 4) if size >= 4 else -1
    if n < 0 or n != int(n):
        raise ValueError(f"code-map side {size} must be a power of two >= 4 (e.g. 8, 16, 32, 64)")
    return int(n)


def dcgan_init(module: nn.Module) -> None:
    """Weights N(0, 0.02), BatchNorm scales N(1, 0.02), as in Radford et al. (2016)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def snap(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Snap each vector of z (B, D, h, w) to its nearest codebook row (K, D).

    Returns the snapped map with straight-through gradients to z, and the codes (B, h, w).
    """
    b, d, h, w = z.shape
    codes = nearest_rows(z.detach().permute(0, 2, 3, 1).reshape(-1, d).float(), codebook)
    codes = codes.view(b, h, w)
    return z + (embed_codes(codes, codebook) - z).detach(), codes


def nearest_rows(flat: torch.Tensor, codebook: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Index of the nearest codebook row for each row of flat (N, D): the argmax of
    x.e - |e|^2 / 2 (|x|^2 is the same for every code), one fused matrix product per ``chunk``
    rows, so each chunk's scores stay in the CPU's cache (3x faster than
    quantizer.nearest_codes' full N x K distance matrix at N = 32 maps of 32x32, K = 512)."""
    emb = codebook.float()
    half_sq = emb.pow(2).sum(1).mul(-0.5)
    parts = [torch.addmm(half_sq, flat[i : i + chunk], emb.t()).max(dim=1).indices
             for i in range(0, len(flat), chunk)]  # fmt: skip
    return torch.cat(parts)


def embed_onehot(onehot: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """One-hot (or soft) map (B, K, h, w) -> embedded map (B, D, h, w)."""
    return torch.einsum("bkhw,kd->bdhw", onehot, codebook.float())


class Generator(nn.Module):
    """Noise (B, latent_dim) -> a (B, out_channels, size, size) map.

    A 4x4 transposed convolution from the noise, then 4x4 stride-2 transposed convolutions with
    BatchNorm and ReLU doubling the side (channels halving from ``channels``, floored at
    ``min_channels``), the last one without BatchNorm or activation: a latent map (head "latent",
    out_channels = D) or logits (head "logits", out_channels = K).
    """

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        size: int,
        channels: int = 256,
        min_channels: int = 64,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.size = size
        n = _n_doublings(size)
        layers: list[nn.Module] = []
        if n == 0:
            layers.append(nn.ConvTranspose2d(latent_dim, out_channels, 4, 1, 0))
        else:
            c = channels
            layers += [
                nn.ConvTranspose2d(latent_dim, c, 4, 1, 0, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            for _ in range(n - 1):
                nxt = max(c // 2, min_channels)
                layers += [
                    nn.ConvTranspose2d(c, nxt, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(nxt),
                    nn.ReLU(inplace=True),
                ]
                c = nxt
            layers.append(nn.ConvTranspose2d(c, out_channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, noise: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """(B, latent_dim) -> (B, out_channels, size, size); ``channels_last``: that tensor in
        channels-last memory, each position's out_channels values side by side (what a draw
        over K logits per position reads; the CPU's last convolution also writes it directly)."""
        x = noise.view(noise.shape[0], self.latent_dim, 1, 1)
        if not channels_last:
            return self.net(x)
        return self.net[-1](self.net[:-1](x).contiguous(memory_format=torch.channels_last))


class Discriminator(nn.Module):
    """Embedded code map (B, D, size, size) -> one realness score per map (B,).

    4x4 stride-2 convolutions with LeakyReLU(0.2) halve the side down to 4x4 (channels doubling
    from ``channels``, capped at ``max_channels``), then a 4x4 convolution gives the score. The
    first layer has no normalisation (Radford et al.); the others have BatchNorm, or, with
    ``spectral_norm=True``, every convolution is spectrally normalised instead (Miyato et al.,
    2018), which bounds D's Lipschitz constant and keeps its gradients to G useful on a small set.
    ``minibatch_std=True`` gives the last layer the batch's standard deviation as one more feature
    (Karras et al., 2018), so D can tell a collapsed batch from a varied one.
    """

    def __init__(
        self,
        in_channels: int,
        size: int,
        channels: int = 64,
        max_channels: int = 512,
        spectral_norm: bool = True,
        minibatch_std: bool = False,
    ) -> None:
        super().__init__()
        n = _n_doublings(size)
        self.minibatch_std = minibatch_std

        def conv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Module:
            layer = nn.Conv2d(cin, cout, k, s, p, bias=spectral_norm or cout == 1)
            return _sn(layer) if spectral_norm else layer

        layers: list[nn.Module] = []
        c_in, c = in_channels, channels
        for i in range(n):
            layers.append(conv(c_in, c, 4, 2, 1))
            if i > 0 and not spectral_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in, c = c, min(c * 2, max_channels)
        self.features = nn.Sequential(*layers)
        self.head = conv(c_in + int(minibatch_std), 1, 4, 1, 0)
        if not spectral_norm:
            dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, size, size) -> (B,)."""
        f = self.features(x)
        if self.minibatch_std:
            f = _append_minibatch_std(f)
        return self.head(f).view(x.shape[0])


def _append_minibatch_std(f: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one channel: the std over groups of the batch, averaged (Karras et al., 2018).

    A generator that collapses to one output makes this feature near zero, which D can then use.
    """
    b, c, h, w = f.shape
    g = min(group, b)
    while b % g:
        g -= 1
    y = f.view(g, b // g, c, h, w).float()
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (b // g,)
    y = y.view(1, b // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(b, 1, h, w)
    return torch.cat([f, y.to(f.dtype)], dim=1)


def random_translate(x: torch.Tensor, max_frac: float = 0.125) -> torch.Tensor:
    """Shift each image of x (B, C, H, W) by its own random whole-pixel offset of up to max_frac of
    the side, filling with zeros (the background of a skull-stripped slice); differentiable in x.

    Applied to real and generated images alike before the discriminator (DiffAugment, Zhao et al.,
    2020), it keeps D from memorising a small training set while G still learns undistorted maps.
    """
    b, _, h, w = x.shape
    ph, pw = int(max_frac * h), int(max_frac * w)
    if ph == 0 and pw == 0:
        return x
    padded = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1)  # (B, H + 2ph, W + 2pw, C)
    dy = torch.randint(-ph, ph + 1, (b, 1), device=x.device)
    dx = torch.randint(-pw, pw + 1, (b, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None] + ph - dy  # (B, H): source row of each row
    cols = torch.arange(w, device=x.device)[None] + pw - dx
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_cutout(x: torch.Tensor, frac: float = 0.5) -> torch.Tensor:
    """Zero one random square of side frac * side in each map of x (B, C, H, W), its own place
    per map (DiffAugment's cutout, Zhao et al., 2020); differentiable in x elsewhere."""
    b, _, h, w = x.shape
    ch, cw = int(frac * h), int(frac * w)
    if ch == 0 or cw == 0:
        return x
    y0 = torch.randint(0, h - ch + 1, (b, 1, 1), device=x.device)
    x0 = torch.randint(0, w - cw + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    hole = (rows >= y0) & (rows < y0 + ch) & (cols >= x0) & (cols < x0 + cw)  # (B, H, W)
    return x * (~hole)[:, None].to(x.dtype)


def augment_maps(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment of embedded code maps before the code discriminator: a random shift of up to
    1/8 of the side, then a cutout of a quarter of the map (half the side), both per map."""
    return random_cutout(random_translate(x), 0.5)
