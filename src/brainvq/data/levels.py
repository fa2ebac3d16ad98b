"""Axial levels as a condition: is the numbering of a data set's slices anatomical, and which
slice lies below which.

The level of a slice is read from its name (`slice_Z`, brainvq.data.subjects) and normalised within
its subject (0 its lowest kept slice, 1 its highest; `Splits.relative_levels`). Third-party
numbering need not follow anatomy (slices written in another order, or numbered per file rather
than per position), so a prior uses levels as a condition only where ``check_level_order`` finds
that neighbouring Z of a subject look alike: for sampled pairs (Z, next Z of the same subject) and
(Z, a random other Z of the same subject at least two steps away), the neighbour must be the more
alike (SSIM) in most pairs and on average by a clear margin.

    ok = check_level_order(arrays["train"], splits.subjects["train"], splits.levels["train"])
    below = slice_below(splits.subjects["train"], splits.levels["train"])   # index or -1
"""

from __future__ import annotations

import numpy as np
import torch

from brainvq.metrics import as_images, ssim

ORDER_PAIRS = 256  # (neighbour, other level) pairs the order check compares at most
ORDER_SHARE = 0.75  # share of pairs whose neighbour must be the more alike
ORDER_MARGIN = 0.03  # mean SSIM of neighbours must exceed that of other levels by this


def _by_subject(subjects: np.ndarray, levels: np.ndarray) -> dict[str, np.ndarray]:
    """Each subject's slice indices with a known level, sorted by level (ties: file order)."""
    out: dict[str, list[int]] = {}
    for i, (s, z) in enumerate(zip(subjects, levels, strict=True)):
        if s and z >= 0:
            out.setdefault(s, []).append(i)
    return {s: np.array(sorted(idx, key=lambda i: (levels[i], i))) for s, idx in out.items()}


def slice_below(subjects: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """For each slice, the index of the next lower slice of the same subject in the same list
    (the highest Z below its own), or -1 (the subject's lowest, or no subject or level)."""
    below = np.full(len(subjects), -1, dtype=np.int64)
    for idx in _by_subject(subjects, levels).values():
        z = levels[idx]
        for j in range(1, len(idx)):
            if z[j] > z[j - 1]:
                below[idx[j]] = idx[j - 1]
            elif below[idx[j - 1]] >= 0:  # the same Z twice: both sit on the slice below
                below[idx[j]] = below[idx[j - 1]]
    return below


def levels_per_subject(subjects: np.ndarray, levels: np.ndarray) -> int:
    """The median number of distinct levels a subject has (0 when none has a level)."""
    counts = [len(np.unique(levels[idx])) for idx in _by_subject(subjects, levels).values()]
    return int(np.median(counts)) if counts else 0


def check_level_order(
    images: np.ndarray,
    subjects: np.ndarray,
    levels: np.ndarray,
    pairs: int = ORDER_PAIRS,
    seed: int = 0,
) -> dict:
    """Are a split's levels anatomical? Compares SSIM of (Z, next Z) with (Z, other Z) pairs of
    the same subjects, on up to ``pairs`` seeded pairs of uint8 (N, S, S) slices.

    Returns {"ok", "pairs", "neighbour_ssim", "other_ssim", "neighbour_share", "reason"}; ok only
    when some subject has at least 4 levels, the neighbour is the more alike in at least
    ORDER_SHARE of the pairs and its mean SSIM is ORDER_MARGIN above that of the other levels."""
    rng = np.random.default_rng(seed)
    candidates = []
    for idx in _by_subject(subjects, levels).values():
        z = levels[idx]
        if len(np.unique(z)) < 4:
            continue
        for j in range(len(idx) - 1):
            if z[j + 1] == z[j]:
                continue
            far = [k for k in range(len(idx)) if abs(z[k] - z[j]) >= 2 * (z[j + 1] - z[j])]
            if far:
                candidates.append((idx[j], idx[j + 1], far, idx))
    result = {"ok": False, "pairs": 0, "neighbour_ssim": float("nan")}
    result.update(other_ssim=float("nan"), neighbour_share=float("nan"))
    if not candidates:
        result["reason"] = "no subject has 4 or more levels"
        return result
    pick = rng.permutation(len(candidates))[:pairs]
    a, near, other = [], [], []
    for p in pick:
        i, j, far, idx = candidates[p]
        a.append(i)
        near.append(j)
        other.append(idx[far[rng.integers(len(far))]])
    with torch.no_grad():
        x = as_images(np.asarray(images)[np.array(a)])
        s_near = ssim(x, as_images(np.asarray(images)[np.array(near)]))
        s_other = ssim(x, as_images(np.asarray(images)[np.array(other)]))
    share = float((s_near > s_other).float().mean())
    n_mean, o_mean = float(s_near.mean()), float(s_other.mean())
    ok = share >= ORDER_SHARE and n_mean - o_mean >= ORDER_MARGIN
    result.update(
        ok=ok, pairs=len(a), neighbour_ssim=n_mean, other_ssim=o_mean, neighbour_share=share
    )
    result["reason"] = (
        f"neighbouring levels SSIM {n_mean:.2f} vs other levels {o_mean:.2f}, the neighbour "
        f"more alike in {share:.0%} of {len(a)} pairs"
    )
    return result


def level_band(levels: np.ndarray, bands: int = 4) -> np.ndarray:
    """Relative levels in [0, 1] -> band indices 0 .. bands-1 (equal widths; NaN -> -1)."""
    lv = np.asarray(levels, dtype=np.float64)
    out = np.minimum((np.nan_to_num(lv, nan=0.0) * bands).astype(np.int64), bands - 1)
    return np.where(np.isnan(lv), -1, out)
