"""Covariates as a condition of the code transformers, and classifier-free guidance.

``CovariateEmbedding`` turns a vector of covariates per map into one vector added to every
input token, as the axial level's embedding is (brainvq.nn.transformer): a continuous covariate
(given standardised) through a small MLP, a categorical one (given as its level's index) through
an embedding table; each has a learned "unknown" vector for NaN, so a prior trained with the
covariates sometimes hidden (condition dropout) also draws maps with them unknown.

``Guide`` carries the inputs' conditions for sampling with classifier-free guidance (Ho &
Salimans, 2022): logits = unconditioned + scale * (conditioned - unconditioned), the two passes
run as one batch of twice the maps. Scale 1 is the plain conditioned prior and scale 0 the
unconditioned one; both run one pass (``uncond`` None), so they are those paths exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CLAMP = 5.0  # standardised continuous values are clamped to +-CLAMP


class CovariateEmbedding(nn.Module):
    """Covariates (n, C) float -> (n, dim): the sum of one vector per covariate.

    ``kinds[i]`` is 0 for a continuous covariate (its value standardised) and the number of
    levels for a categorical one (its value the level's index); NaN = unknown."""

    def __init__(self, dim: int, kinds: tuple[int, ...]) -> None:
        super().__init__()
        self.kinds = tuple(int(k) for k in kinds)
        self.parts = nn.ModuleList(
            nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
            if k == 0
            else nn.Embedding(k, dim)
            for k in self.kinds
        )
        self.unknown = nn.Parameter(torch.zeros(len(self.kinds), dim))
        nn.init.normal_(self.unknown, std=0.02)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """values (n, C) -> (n, dim)."""
        out = 0
        for i, (kind, part) in enumerate(zip(self.kinds, self.parts, strict=True)):
            v = values[:, i].float()
            known = ~torch.isnan(v)
            v = v.nan_to_num(0.0)
            if kind == 0:
                vec = part(v.clamp(-CLAMP, CLAMP)[:, None])
            else:
                vec = part(v.long().clamp(0, kind - 1))
            out = out + torch.where(known[:, None], vec, self.unknown[i].expand_as(vec))
        return out


@dataclass
class Guide:
    """What conditions the inputs while sampling: ``cond`` (from CodeTransformer.condition, or
    None), and for guided sampling ``uncond`` (the same with the covariates unknown) and the
    guidance ``scale``."""

    cond: torch.Tensor | None
    uncond: torch.Tensor | None = None
    scale: float = 1.0

    def part(self, start: int, count: int) -> Guide:
        """The guide of maps start .. start + count - 1."""

        def cut(x):
            return None if x is None else x[start : start + count]

        return Guide(cut(self.cond), cut(self.uncond), self.scale)

    @property
    def guided(self) -> bool:
        """True when each step runs the conditioned and the unconditioned pass."""
        return self.uncond is not None

    def both(self) -> torch.Tensor:
        """cond and uncond stacked: the conditions of a batch of twice the maps."""
        return torch.cat([self.cond, self.uncond])

    def mix(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits of the doubled batch (2m, ...) -> guided logits (m, ...)."""
        c, u = logits.float().chunk(2)
        return u + self.scale * (c - u)
