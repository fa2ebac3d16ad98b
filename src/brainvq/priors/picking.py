"""Drawing codes from logits: temperature and top-k shaping, the seeded categorical draw and the
Gumbel-max draw every prior samples with (brainvq.priors.base re-exports them)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def shape_logits(logits: torch.Tensor, temperature: float, top_k: int, dim: int = -1):
    """Logits divided by the temperature, with all but the top_k largest set to -inf (0 = all)."""
    if temperature <= 0:
        raise ValueError(f"temperature {temperature}: must be > 0")
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[dim]:
        kth = logits.topk(top_k, dim=dim).values.narrow(dim, top_k - 1, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def gumbel_argmax(
    logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator, dim: int = 1
) -> torch.Tensor:
    """One categorical draw per position along ``dim`` (the Gumbel-max trick): the argmax of the
    shaped logits (shape_logits) plus Gumbel noise from one uniform number per logit, drawn from
    ``generator`` (CPU) in the logits' order. Works in place: ``logits`` (float) is consumed."""
    u = torch.rand(logits.shape, generator=generator).clamp_(1e-9, 1 - 1e-9)
    gumbel = u.log_().neg_().log_().to(logits.device)  # log(-log u): the Gumbel noise, negated
    if 0 < top_k < logits.shape[dim]:
        logits = shape_logits(logits, temperature, top_k, dim=dim)
    else:  # shape_logits without its copy
        if temperature <= 0:
            raise ValueError(f"temperature {temperature}: must be > 0")
        logits = logits.float().div_(temperature)
    return logits.sub_(gumbel).argmax(dim=dim)


def categorical_picker(
    temperature: float, top_k: int, generator: torch.Generator
) -> Callable[[torch.Tensor], torch.Tensor]:
    """pick(logits (B, K)) -> codes (B,): one seeded categorical draw per row.

    Inverse-CDF sampling: one uniform number per row from ``generator`` (a CPU generator, so a seed
    gives the same codes on any device), compared with the running sum of the probabilities.
    """

    def pick(logits: torch.Tensor) -> torch.Tensor:
        cdf = shape_logits(logits, temperature, top_k).softmax(-1).cumsum(-1)
        u = torch.rand(len(cdf), 1, generator=generator).to(cdf.device) * cdf[:, -1:]
        return torch.searchsorted(cdf, u).squeeze(1).clamp_max(cdf.shape[1] - 1)

    return pick
