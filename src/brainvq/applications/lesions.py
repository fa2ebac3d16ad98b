"""Synthetic lesions with ground truth, and the measures of how well anomaly maps find them.

A lesion is a blob with a Gaussian edge, bright (+contrast) or dark (-contrast), added to a real
slice inside its brain mask; ``contrast`` is a share of the slice's brain intensity range (its 1st
to 99th percentile inside the mask). Everything is seeded: the same slice, radius, contrast and
``numpy.random.Generator`` state give the same lesion. bench/anomaly.py measures
brainvq.applications.anomaly with these.

    brain = brain_mask(image)                     # (S, S) bool
    lesioned, truth = insert_lesion(image, radius=8, contrast=-0.3, rng=np.random.default_rng(0))
    auroc(scores, labels); average_precision(scores, labels); best_dice(scores, labels)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label

BRAIN_LEVEL = 12 / 255  # skull-stripped slices: background is ~0, tissue (even CSF) is above this
BRAIN_ERODE = 3  # pixels shaved off the brain's edge, where interpolation blurs it into background
LESION_EDGE = 1.5  # px: the Gaussian fall-off of a lesion's intensity outside its boundary
ASPECT = (0.75, 1.33)  # range of the ellipse's axis ratio
CSF_LEVEL = 0.2  # fluid (CSF): brain pixels below its 1st percentile + this share of its range
CSF_SHARE = 0.25  # a lesion's centre is drawn where at most this share of its disc is fluid


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """A boolean mask (H, W) eroded by a disc of ``radius`` pixels (outside the image counts as
    outside the mask)."""
    if radius <= 0:
        return np.asarray(mask, dtype=bool)
    r = np.arange(-radius, radius + 1)
    footprint = torch.from_numpy((r[:, None] ** 2 + r[None, :] ** 2 <= radius**2) * 1.0)
    out = torch.from_numpy(~np.asarray(mask, dtype=bool) * 1.0)[None, None]
    out = F.pad(out, (radius,) * 4, value=1.0)
    hits = F.conv2d(out, footprint[None, None].to(out.dtype))[0, 0]
    return hits.numpy() < 0.5


def brain_mask(image: np.ndarray, level: float = BRAIN_LEVEL, shave: int = BRAIN_ERODE):
    """Pixels of a slice (S, S) in [0, 1] inside the brain: above ``level``, holes (the
    ventricles) filled, ``shave`` pixels eroded off the edge."""
    mask = np.asarray(image) > level
    parts = label(~mask, connectivity=1)
    border = np.unique(np.r_[parts[0], parts[-1], parts[:, 0], parts[:, -1]])
    mask |= (parts > 0) & ~np.isin(parts, border)  # background not reaching the border: holes
    return erode(mask, shave)


def insert_lesion(
    image: np.ndarray, radius: float, contrast: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``image`` (S, S) float in [0, 1] with one lesion, and its mask (S, S) bool.

    The lesion is an ellipse of area pi * radius^2 (axis ratio drawn in ASPECT, random angle),
    its centre drawn where the whole ellipse fits inside the brain mask (else at the brain's
    deepest point) and lies in tissue, not fluid (at most CSF_SHARE of the disc of its longer
    semi-axis below CSF_LEVEL; else where the least is), its intensity ``contrast`` * the brain's intensity range added inside it and
    falling off as a Gaussian (LESION_EDGE px) outside, only within the brain; the result is
    clipped to [0, 1] and rounded to 8-bit levels like a PNG. The mask is the ellipse within the
    brain."""
    image = np.asarray(image, dtype=np.float64)
    brain = brain_mask(image)
    if not brain.any():
        raise ValueError("no brain in this slice to put a lesion in")
    values = image[brain]
    span = float(np.percentile(values, 99) - np.percentile(values, 1))
    aspect = math.exp(rng.uniform(*np.log(ASPECT)))
    a, b = radius * math.sqrt(aspect), radius / math.sqrt(aspect)
    angle = rng.uniform(0, math.pi)
    fit = max(a, b) + 1
    centres = erode(brain, int(math.ceil(fit)))
    while not centres.any():  # a small brain: the deepest point there is
        fit -= 1
        centres = erode(brain, int(math.ceil(fit)))
    # in tissue, not fluid: the fewest dark (CSF) pixels within the lesion's reach, up to CSF_SHARE
    dark = brain & (image < np.percentile(values, 1) + CSF_LEVEL * span)
    r = int(math.ceil(max(a, b)))
    grid = np.arange(-r, r + 1)
    reach = torch.from_numpy((grid[:, None] ** 2 + grid[None, :] ** 2 <= r * r) * 1.0)
    wet = F.conv2d(torch.from_numpy(dark * 1.0)[None, None], reach[None, None], padding=r)[0, 0]
    wet = wet.numpy() / float(reach.sum())
    share = max(CSF_SHARE, float(wet[centres].min()))
    ys, xs = np.nonzero(centres & (wet <= share + 1e-9))
    k = int(rng.integers(len(ys)))
    cy, cx = ys[k] + rng.uniform(-0.5, 0.5), xs[k] + rng.uniform(-0.5, 0.5)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]].astype(np.float64)
    u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
    v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
    d = np.sqrt((u / a) ** 2 + (v / b) ** 2)  # 1 on the boundary
    outside = np.maximum(d - 1, 0) * min(a, b)  # about the distance in pixels past the boundary
    profile = np.exp(-0.5 * (outside / LESION_EDGE) ** 2) * brain
    out = np.clip(image + contrast * span * profile, 0, 1)
    return np.round(out * 255) / 255, (d <= 1) & brain


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive scores above a negative (ties count half)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks of ties (1-based)
    first = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    last = np.r_[first[1:], len(s)]
    avg = (first + last + 1) / 2
    ranks[order] = np.repeat(avg, last - first)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _sweep(scores: np.ndarray, labels: np.ndarray):
    """Thresholds from high to low, and the true and false positives at or above each."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the end of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return s[last], tp, fp, int(y.sum())


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision, as scikit-learn computes it)."""
    _, tp, fp, n_pos = _sweep(scores, labels)
    if not n_pos:
        return math.nan
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_dice(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The highest Dice of ``scores >= t`` against ``labels`` over every threshold t, and that t."""
    thresholds, tp, fp, n_pos = _sweep(scores, labels)
    dice = 2 * tp / (n_pos + tp + fp)
    i = int(np.argmax(dice))
    return float(dice[i]), float(thresholds[i])


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks (1 when both are empty)."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    total = int(p.sum() + t.sum())
    return 1.0 if total == 0 else float(2 * (p & t).sum() / total)
