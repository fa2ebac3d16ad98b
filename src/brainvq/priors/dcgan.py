"""The DCGAN prior: a generator of code maps (brainvq.nn.dcgan) over the run's codebook; trained
against discriminators by brainvq.training.dcgan; settings in ``prior.dcgan``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from brainvq.config import DCGANConfig
from brainvq.nn.dcgan import Generator, embed_onehot, snap
from brainvq.priors.base import Prior, categorical_picker, eval_mode, gumbel_argmax


class DCGANPrior(Prior):
    """A DCGAN generator over code maps plus the (frozen) codebook it emits codes of.

    ``forward(noise)`` is the differentiable path used in training: it returns the embedded map the
    discriminator sees (B, D, h, w), the codes (B, h, w), and the generator's raw output. With
    design "snap" that is the continuous latent (snapped straight-through); with "gumbel" it is
    the logits (sampled to a straight-through one-hot by Gumbel-softmax).
    """

    kind = "dcgan"

    def __init__(self, cfg: DCGANConfig, codebook: torch.Tensor, code_size: int) -> None:
        super().__init__(codebook, code_size)
        self.design = cfg.design
        self.tau = cfg.gumbel_tau
        self.latent_dim = cfg.latent_dim
        k, d = codebook.shape
        out = k if self.design == "gumbel" else d
        self.generator = Generator(cfg.latent_dim, out, code_size, channels=cfg.g_channels)
        # "snap"/"distance" with tanh_output: G's output = tanh(.) * the codebook's per-dimension
        # range, as DCGAN bounds its images with tanh; it keeps the latent inside the codebook's box
        self.tanh_output = self.design != "gumbel" and cfg.tanh_output
        self.register_buffer("scale", self.codebook.abs().amax(dim=0).clamp_min(1e-6))

    @property
    def uses_temperature(self) -> bool:
        """Only the "gumbel" design draws codes at a temperature (evaluate records it then)."""
        return self.design == "gumbel"

    def _raw(self, noise: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        raw = self.generator(noise, channels_last).float()
        if self.tanh_output:
            raw = torch.tanh(raw) * self.scale[None, :, None, None]
        return raw

    def _logits(self, raw: torch.Tensor) -> torch.Tensor:
        """Logits over the K codes (B, K, h, w) of G's output: the output itself ("gumbel"), or
        ("distance") minus half the squared distance of the latent to each code, up to a
        per-position constant (x.e - |e|^2 / 2): no K-channel layer, the codebook is the head."""
        if self.design == "gumbel":
            return raw
        b, d, h, w = raw.shape
        flat = self._distance_logits(raw.permute(0, 2, 3, 1).reshape(-1, d))
        return flat.view(b, h, w, -1).permute(0, 3, 1, 2)

    def _distance_logits(self, flat: torch.Tensor) -> torch.Tensor:
        """Latents (N, D) -> logits (N, K): x.e - |e|^2 / 2 for each code e."""
        return torch.addmm(self.codebook.pow(2).sum(1).mul(-0.5), flat, self.codebook.t())

    def forward(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise (B, latent_dim) -> (embedded map (B, D, h, w), codes (B, h, w), raw output)."""
        raw = self._raw(noise)
        if self.design == "snap":
            embedded, codes = snap(raw, self.codebook)
        elif self.design == "distance":  # one row per position: contiguous products over K
            b, d, h, w = raw.shape
            flat = self._distance_logits(raw.permute(0, 2, 3, 1).reshape(-1, d))
            onehot = F.gumbel_softmax(flat, tau=self.tau, hard=True, dim=1)
            codes = onehot.argmax(dim=1).view(b, h, w)
            embedded = (onehot @ self.codebook).view(b, h, w, d).permute(0, 3, 1, 2)
        else:
            onehot = F.gumbel_softmax(self._logits(raw), tau=self.tau, hard=True, dim=1)
            codes = onehot.argmax(dim=1)
            embedded = embed_onehot(onehot, self.codebook)
        return embedded, codes, raw

    def noise(self, n: int, seed: int) -> torch.Tensor:
        """Seeded standard-normal noise (n, latent_dim), drawn on the CPU so seeds match anywhere."""
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.latent_dim, generator=g)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int = 0,
        batch_size: int = 4,
        progress: bool = False,
        draw: str = "cdf",
    ) -> torch.LongTensor:
        """n new code maps (n, h, w) int64 in [0, K); the same seed gives the same maps, whatever
        the batch size (small batches keep the K logits of each position in the CPU's caches).

        Design "gumbel": temperature and top_k shape the generator's logits before the draw.
        ``draw`` "cdf": one uniform number per position against the running sum of the
        probabilities (categorical_picker, the draw of the other priors); "gumbel": the argmax
        of logits plus Gumbel noise, K uniform numbers per position (earlier versions' only
        draw: the maps they gave under a seed). Both draw from the same distribution, not the
        same maps; "cdf" asks the generator for K times fewer numbers, 1.6x the slices per
        CPU-second at K = 512 with 32x32 maps (bench/results/sampling_speed.md).
        Design "snap" has nothing to draw from (each code is the nearest to G's output), so
        temperature, top_k and draw are ignored there.
        """
        if n < 1:
            raise ValueError(f"n = {n}: ask for at least one sample")
        if draw not in ("gumbel", "cdf"):
            raise ValueError(f"draw {draw!r}: use 'gumbel' or 'cdf'")
        device = self.codebook.device
        noise = self.noise(n, seed)
        gen = torch.Generator().manual_seed(int(seed) + 1)
        pick = categorical_picker(temperature, top_k, gen)
        out = []
        with eval_mode(self):
            for s in range(0, n, batch_size):
                z = noise[s : s + batch_size].to(device)
                if self.design == "snap":
                    _, codes = snap(self._raw(z), self.codebook)
                elif draw == "gumbel":  # a categorical draw per position: argmax of logits + noise
                    codes = gumbel_argmax(self._logits(self._raw(z)), temperature, top_k, gen)
                elif self.design == "distance":
                    raw = self._raw(z)
                    b, d, h, w = raw.shape
                    flat = self._distance_logits(raw.permute(0, 2, 3, 1).reshape(-1, d))
                    codes = pick(flat).view(b, h, w)
                else:  # channels-last logits: (B, h, w, K) in memory, one row per position
                    raw = self._raw(z, channels_last=True)
                    b, k, h, w = raw.shape
                    codes = pick(raw.permute(0, 2, 3, 1).reshape(-1, k)).view(b, h, w)
                out.append(codes.cpu())
        return torch.cat(out).long()

    @torch.no_grad()
    def recalibrate_bn(self, n_batches: int = 16, batch_size: int = 64, seed: int = 0) -> None:
        """Re-estimate BatchNorm running statistics as exact averages over fresh noise batches.

        Sampling runs the generator in eval mode; after EMA weight averaging the running statistics
        no longer match the weights, so they are recomputed (a standard step for EMA generators).
        """
        bns = [m for m in self.generator.modules() if isinstance(m, nn.BatchNorm2d)]
        if not bns:
            return
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        device = self.codebook.device
        with eval_mode(self.generator, training=True):
            for i in range(n_batches):
                self.generator(self.noise(batch_size, seed + 1000 + i).to(device))
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
