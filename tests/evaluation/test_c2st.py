"""The classifier two-sample test: chance on one distribution, near 1 on blurred or noised copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from brainvq.errors import BrainVQError, DataError
from brainvq.evaluation.c2st import as_images, assign_folds, c2st, describe

SIZE, N, FOLDS = 48, 80, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def brain_like(rng: np.random.Generator, n: int, size: int = SIZE) -> np.ndarray:
    """Float slices in [0, 1]: an ellipse with a darker inner ellipse, folded texture and fine
    noise inside (what blur takes away), black outside."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        a, b = rng.uniform(0.3, 0.42, 2)
        outer = (xx / a) ** 2 + (yy / b) ** 2 < 1
        inner = (xx / (0.4 * a)) ** 2 + (yy / (0.5 * b)) ** 2 < 1
        folds = gaussian_filter(rng.normal(0, 1, (size, size)), 1.5)
        img = outer * (rng.uniform(0.55, 0.8) + 0.6 * folds) - 0.3 * inner
        out[i] = np.clip(img + outer * rng.normal(0, 0.04, (size, size)), 0, 1)
    return out


@pytest.fixture(scope="module")
def slices() -> np.ndarray:
    """2N synthetic slices of one distribution."""
    return brain_like(np.random.default_rng(0), 2 * N)


def paired(n: int) -> dict:
    """Group arguments that keep image i of both sides in one fold (the other side is a copy)."""
    return {"real_groups": list(range(n)), "other_groups": list(range(n))}


def test_real_against_real_is_chance(slices):
    r = c2st(slices[:N], slices[N:], folds=FOLDS)
    assert abs(r["accuracy"] - 0.5) <= 0.1
    assert r["n_per_side"] == N and len(r["folds"]) == FOLDS and r["pool"] == 1
    assert min(r["train_accuracy"]) >= 0.6  # it fit its training images: chance is not a failure


def test_blurred_copies_are_told_apart(slices):
    real = slices[:N]
    blurred = gaussian_filter(real, (0, 1, 1))
    assert c2st(real, blurred, folds=FOLDS, **paired(N))["accuracy"] >= 0.9


def test_noised_copies_are_told_apart(slices):
    real = slices[:N]
    noise = np.random.default_rng(1).normal(0, 0.02, real.shape)
    noised = np.clip(real + noise, 0, 1).astype(np.float32)
    assert c2st(real, noised, folds=FOLDS, **paired(N))["accuracy"] >= 0.9


def test_pooling_hides_what_is_finer_than_the_blocks():
    """Slices with and without a faint one-pixel checkerboard: plain to see at full resolution,
    gone once 2x2 blocks are averaged (then each pair is one image under two labels, which no
    classifier can fit: it retries, then warns rather than passing 0.5 off silently)."""
    n = 40
    base = 0.1 + 0.8 * brain_like(np.random.default_rng(2), n)
    checker = 0.05 * (-1.0) ** np.add.outer(np.arange(SIZE), np.arange(SIZE))
    a, b = (base + checker).astype(np.float32), base.astype(np.float32)
    assert c2st(a, b, folds=FOLDS, **paired(n))["accuracy"] >= 0.9
    with pytest.warns(UserWarning, match="did not fit"):
        pooled = c2st(a, b, pool=2, folds=FOLDS, **paired(n))
    assert pooled["pool"] == 2 and abs(pooled["accuracy"] - 0.5) <= 0.05
    assert pooled["retries"] > 0


def test_same_seed_same_result(slices):
    a, b = slices[:12, 8:40, 8:40], slices[N : N + 15, 8:40, 8:40]
    first = c2st(a, b, folds=2, seed=3)
    assert c2st(a, b, folds=2, seed=3) == first
    assert first["n_per_side"] == 12  # the larger side subsampled to the smaller's count


def test_images_in_any_form():
    u8 = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    x = as_images(u8)
    assert x.shape == (3, 1, 16, 16) and x.dtype == torch.float32
    assert torch.equal(as_images(u8.astype(np.float32) / 255), x)
    assert torch.equal(as_images(x), x) and torch.equal(as_images(x.numpy()[:, 0]), x)


def test_groups_stay_whole_and_sides_stay_balanced():
    rng = np.random.default_rng(0)
    brains = [i // 8 for i in range(40)]
    fa, fb = assign_folds([brains, [("sample", i) for i in range(40)]], 5, rng)
    for brain in set(brains):
        assert len({int(fa[i]) for i in range(40) if brains[i] == brain}) == 1
    assert np.bincount(fa).tolist() == [8] * 5 and np.bincount(fb).tolist() == [8] * 5
    fa, fb = assign_folds([brains, brains], 5, rng)  # the same labels: the same fold both sides
    assert (fa == fb).all()


def test_bad_input_raises(slices):
    a = slices[:20]
    with pytest.raises(DataError, match="at least"):
        c2st(a[:5], a)
    with pytest.raises(DataError, match="resize"):
        c2st(a, slices[20:40, :32, :32])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        c2st(a, a * 2)
    with pytest.raises(DataError, match="shape"):
        c2st(a[:, None, None], a)
    with pytest.raises(DataError, match="int64"):
        as_images(np.zeros((20, 32, 32), np.int64))
    with pytest.raises(DataError, match="labels"):
        c2st(a, a, real_groups=[0, 1])
    with pytest.raises(DataError, match="two groups"):
        c2st(a, a, real_groups=[0] * 20)
    with pytest.raises(BrainVQError, match="too small"):
        c2st(a[:, :16, :16], a[:, :16, :16], pool=2)


def test_describe_says_how_to_read_it():
    r = {"accuracy": 0.86, "accuracy_std": 0.05, "folds": [0.8, 0.9], "n_per_side": 300, "pool": 2}
    line = describe(r, "reconstructions")
    assert "0.86" in line and "2x2" in line and "0.5 = " in line


def test_a_lone_last_image_at_the_smallest_size_trains():
    """At 16 px (pool 4 of 64-px slices) the classifier's features end 1x1, where batch norm
    cannot use a batch of one image: a training fold of 129 images (129 = 4 * 32 + 1 = 128 + 1)
    leaves one alone in the last training batch and in the last batch-norm pass."""
    from brainvq.evaluation.c2st import _train_fold

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(129, 2, 16, 16, generator=gen)
    y = (torch.arange(129) % 2).float()
    model, mean, std = _train_fold(x, y, np.arange(129), 1, 0)
    assert not model.training and mean.shape == (1, 2, 1, 1)
