"""The MaskGIT prior (brainvq.nn.maskgit): code maps drawn in a few parallel steps, and
variations of given maps; settings in ``prior.maskgit``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from brainvq.config import MaskGITConfig
from brainvq.nn.maskgit import MaskedCodeTransformer
from brainvq.priors.base import Prior
from brainvq.priors.covariates import network_kinds
from brainvq.priors.transformer import network_sizes


class MaskGITPrior(Prior):
    """A bidirectional masked-code transformer sampled by iterative parallel decoding
    (MaskGIT, Chang et al., 2022; brainvq.nn.maskgit). It has no tractable likelihood: its
    training loss, and the validation bits/code that picks its kept weights, are the bits per
    *hidden* code of maps with a scheduled share hidden, not -log2 p(map)."""

    kind = "maskgit"
    can_vary = True
    can_condition = True

    def __init__(
        self,
        cfg: MaskGITConfig,
        codebook: torch.Tensor,
        code_size: int,
        conditions=(),
        covariates=(),
    ) -> None:
        super().__init__(codebook, code_size, conditions, covariates)
        self.net = MaskedCodeTransformer(
            codebook.shape[0],
            code_size * code_size,
            **network_sizes(cfg),
            levels="level" in self.conditions,
            below="below" in self.conditions,
            covariates=network_kinds(self.covariates),
        )
        self.steps, self.noise = cfg.steps, cfg.noise

    def forward(self, tokens: torch.Tensor, **cond) -> torch.Tensor:
        """Tokens (B, h, w) in [0, K] (K = hidden) -> logits (B, K, h, w); ``cond``: levels,
        below, covariates (a conditioned prior)."""
        return self.net(tokens, **cond)

    def loss(self, codes: torch.Tensor, **cond) -> torch.Tensor:
        """Mean cross-entropy (nats) of the hidden codes of maps with a scheduled share hidden.

        In eval mode the hidden positions come from a fixed seed, so validation is repeatable."""
        gen = None if self.training else torch.Generator().manual_seed(0)
        tokens, hidden = self.net.hide(codes, gen)
        ce = F.cross_entropy(self.net(tokens, **cond).float(), codes, reduction="none")
        return ce[hidden].mean()

    def _draw(self, n: int, pick, generator, progress, **cond) -> torch.Tensor:
        size = (self.code_size, self.code_size)
        return self.net.generate(n, size, pick, self.steps, self.noise, generator, progress, **cond)

    def _vary(
        self, codes: torch.Tensor, share: float, pick, generator, progress, **cond
    ) -> torch.Tensor:
        size = (self.code_size, self.code_size)
        tokens, _ = self.net.hide(codes.to(self.codebook.device), generator, share)
        return self.net.generate(
            len(tokens), size, pick, self.steps, self.noise, generator, progress, tokens, **cond
        )
