"""Batch-norm statistics of a network trained briefly: its running averages lag behind the
weights, so eval mode misreads; they are reset and measured again over the training images."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def refresh_batch_norm(
    model: nn.Module,
    images: torch.Tensor,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    chunk: int = 128,
) -> nn.Module:
    """Reset every BatchNorm2d of ``model`` and set its statistics to the average over ``images``
    in chunks (``prepare`` applied to each, e.g. a standardisation); a last chunk of one image is
    left out (batch norm needs two values per channel where features end 1x1). Returns the model
    in eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the chunks
    model.train()
    for i in range(0, len(images), chunk):
        if len(images) - i > 1 or i == 0:
            batch = images[i : i + chunk]
            model(prepare(batch) if prepare else batch)
    return model.eval()
