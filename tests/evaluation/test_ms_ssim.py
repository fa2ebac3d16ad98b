"""MS-SSIM (brainvq.evaluation.ms_ssim): its known properties, and at one scale skimage's
Gaussian-window SSIM."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from brainvq.errors import DataError
from brainvq.evaluation.ms_ssim import mean_pairwise_ms_ssim, ms_ssim, scales_for, scales_note

from ..conftest import fake_slice


def _slices(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([fake_slice(rng, size) for _ in range(n)]).astype(np.float32) / 255


def test_scales_that_fit():
    assert [scales_for(s) for s in (10, 11, 32, 64, 128, 176, 256)] == [0, 1, 2, 3, 4, 5, 5]
    assert scales_note(128).startswith("4 scales (128, 64, 32, 16 px)")


def test_identical_images_score_one_and_noise_lowers_it():
    x = _slices(4)
    assert np.allclose(ms_ssim(x, x).numpy(), 1.0, atol=1e-5)
    rng = np.random.default_rng(1)
    scores = []
    for sigma in (0.02, 0.05, 0.1, 0.2):
        noisy = np.clip(x + rng.normal(0, sigma, x.shape), 0, 1).astype(np.float32)
        scores.append(ms_ssim(x, noisy).numpy())
    scores = np.stack(scores)  # (noise level, image)
    assert (np.diff(scores, axis=0) < 0).all() and (scores < 1).all() and (scores > 0).all()


def test_symmetric_and_lower_for_different_slices():
    x, y = _slices(6, seed=0), _slices(6, seed=1)
    assert np.allclose(ms_ssim(x, y).numpy(), ms_ssim(y, x).numpy(), atol=1e-6)
    assert (ms_ssim(x, y) < 0.99).all()


def test_one_scale_is_skimage_gaussian_ssim():
    x, y = _slices(3, 32, 0), _slices(3, 32, 2)
    mine = ms_ssim(x, y, scales=1).numpy()
    theirs = [
        structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        for a, b in zip(x, y, strict=True)
    ]
    assert np.allclose(mine, theirs, atol=1e-4)


def test_mean_pairwise_is_one_for_copies_and_lower_for_varied_sets():
    x = _slices(5)
    same = np.repeat(x[:1], 5, axis=0)
    assert mean_pairwise_ms_ssim(same) == pytest.approx(1.0, abs=1e-5)
    varied = mean_pairwise_ms_ssim(x)
    assert varied < 0.99
    assert mean_pairwise_ms_ssim(x, max_pairs=4, seed=0) != pytest.approx(varied, abs=1e-9)


def test_too_small_or_mismatched_is_an_error():
    with pytest.raises(DataError, match="at most 2 fit"):
        ms_ssim(_slices(2, 32), _slices(2, 32), scales=3)
    with pytest.raises(DataError, match="shapes"):
        ms_ssim(_slices(2, 32), _slices(2, 64))
