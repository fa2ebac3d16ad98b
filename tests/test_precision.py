"""Training precision: the suite's configs state theirs, and a bf16 VQ-VAE stage trains on a CPU
with BF16 (the one test here that depends on the CPU's flags, and it skips without them)."""

from __future__ import annotations

import csv

import pytest
import torch

from brainvq.config import Config
from brainvq.training.hardware import cpu_has_bf16

from .conftest import TEST_PRECISION, TINY_OVERRIDES, tiny_config


def test_the_tiny_configs_state_the_suites_precision():
    assert Config().train.precision == "auto"  # what a user gets: the tests must not inherit it
    assert tiny_config().train.precision == TEST_PRECISION
    i = TINY_OVERRIDES.index("--train.precision")
    assert TINY_OVERRIDES[i + 1] == TEST_PRECISION
    assert tiny_config(precision="bf16").train.precision == "bf16"  # a test may state its own


@pytest.mark.skipif(not cpu_has_bf16(), reason="the CPU has no BF16 (AVX512-BF16 or AMX)")
def test_a_bf16_vqvae_stage_trains_under_bf16_autocast_and_lowers_its_loss(
    keras_root, tmp_path, monkeypatch
):
    from brainvq.training import vqvae

    seen = []
    step = vqvae.VQVAEModule.training_step

    def spy(self, batch, batch_idx):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(vqvae.VQVAEModule, "training_step", spy)
    cfg = tiny_config(max_epochs=1000, max_steps=60, precision="bf16", accelerator="cpu")
    vqvae.train_vqvae(str(keras_root), str(tmp_path / "run"), cfg, progress=False)
    assert len(seen) == 60 and set(seen) == {(True, torch.bfloat16)}
    with (tmp_path / "run" / "logs" / "vqvae" / "metrics.csv").open() as f:
        losses = [float(r["loss_step"]) for r in csv.DictReader(f) if r.get("loss_step")]
    assert len(losses) == 60 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
