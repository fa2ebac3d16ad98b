"""The training loop of the small classifiers that measure samples (the C2ST's, the level
classifier, the utility test's SliceNet): Adam under a one-cycle schedule, one update per batch
of indices. Each caller keeps what is its own: how it draws its batches, its loss, its model's
seed, and the batch-norm refresh afterwards (brainvq.nn.batchnorm)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

WARM_UP = 0.2  # share of the steps the learning rate rises over


def fit_batches(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    steps: int,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    lr: float,
    tick: Callable[[], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place over ``batches`` (``steps`` of them: the schedule's length), one
    Adam update on ``loss_of(indices)`` each; a batch of one index is not trained on (batch norm
    needs two images) but the schedule still steps. ``tick()`` after each batch. Returns it."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=WARM_UP)
    model.train()
    for idx in batches:
        if len(idx) > 1:
            loss = loss_of(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if tick:
            tick()
    return model
