"""Benchmark: anomaly maps against synthetic lesions with ground truth.

Usage: python bench/anomaly.py [--run runs/anomaly] [--data ../shared/data/brain-mri-128]

The lesion set (fixed before any measurement): every real slice of the validation and test
brains, untouched, and once with one lesion of each radius in RADII and each contrast in
CONTRASTS (brainvq.evaluation.lesions.insert_lesion: a Gaussian-edged ellipse inside the brain
mask, in tissue, +-c of the slice's brain intensity range), each drawn from its own seed.
"""

from __future__ import annotations

import numpy as np

from brainvq.evaluation.lesions import insert_lesion

RADII = (4, 8, 12)
CONTRASTS = (0.15, -0.15, 0.3, -0.3, 0.5, -0.5)
SPLIT_SEED = {"validate": 1, "test": 2}


def lesion_set(images: np.ndarray, split: str, seed: int = 0) -> dict:
    """The lesioned copies of ``images`` (N, S, S) float in [0, 1]: {(radius, contrast):
    (lesioned (N, S, S) float32, masks (N, S, S) bool)}; lesion i of a condition comes from the
    seed (seed, split, condition, i), so each slice's lesion is the same in every run."""
    out = {}
    for j, (radius, contrast) in enumerate((r, c) for r in RADII for c in CONTRASTS):
        made = [
            insert_lesion(
                x, radius, contrast, np.random.default_rng([seed, SPLIT_SEED[split], j, i])
            )
            for i, x in enumerate(images)
        ]
        out[radius, contrast] = (
            np.stack([m[0] for m in made]).astype(np.float32),
            np.stack([m[1] for m in made]),
        )
    return out
