"""The small classifiers' training loop (brainvq.nn.fitting.fit_batches)."""

import torch

from brainvq.nn.fitting import fit_batches


def test_fit_batches_trains_on_each_batch_skips_single_images_and_ticks():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 32)[:, None]
    y = 2 * x - 0.5
    model = torch.nn.Linear(1, 1)
    seen, ticks = [], []

    def loss_of(idx):
        seen.append(len(idx))
        return torch.nn.functional.mse_loss(model(x[idx]), y[idx])

    before = loss_of(torch.arange(32)).item()
    seen.clear()
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randperm(32, generator=gen)[:8] for _ in range(59)] + [torch.tensor([3])]
    out = fit_batches(model, batches, len(batches), loss_of, 0.1, lambda: ticks.append(1))
    assert out is model and model.training
    assert seen == [8] * 59  # the one-image batch is not trained on
    assert len(ticks) == 60  # but it ticks (one per batch)
    after = torch.nn.functional.mse_loss(model(x), y).item()
    assert after < 0.05 * before
