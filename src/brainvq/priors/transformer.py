"""The raster-order transformer prior (brainvq.nn.transformer); settings in
``prior.transformer``."""

from __future__ import annotations

import torch

from brainvq.config import TransformerConfig, TransformerSizes
from brainvq.nn.transformer import CodeTransformer
from brainvq.priors.base import AutoregressivePrior
from brainvq.priors.covariates import network_kinds


def network_sizes(cfg: TransformerSizes) -> dict:
    """A transformer section's sizes (and dropout) as keyword arguments of the networks."""
    return {
        "dim": cfg.dim,
        "layers": cfg.layers,
        "heads": cfg.heads,
        "kv_heads": cfg.kv_heads,
        "dropout": cfg.dropout,
    }


class TransformerPrior(AutoregressivePrior):
    """A small decoder-only transformer over raster-ordered codes, sampled with a KV cache."""

    kind = "transformer"
    can_condition = True

    def __init__(
        self,
        cfg: TransformerConfig,
        codebook: torch.Tensor,
        code_size: int,
        conditions=(),
        covariates=(),
    ) -> None:
        net = CodeTransformer(
            codebook.shape[0],
            code_size * code_size,
            window=cfg.window,
            **network_sizes(cfg),
            levels="level" in conditions,
            below="below" in conditions,
            covariates=network_kinds(covariates),
        )
        super().__init__(net, codebook, code_size, conditions, covariates)

    def _draw(self, n: int, pick, generator, progress, **cond) -> torch.Tensor:
        size = (self.code_size, self.code_size)
        return self.net.generate(n, size, pick, progress=progress, **cond)
