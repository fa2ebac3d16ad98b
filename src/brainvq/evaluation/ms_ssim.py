"""Multi-scale SSIM (Wang, Simoncelli & Bovik, "Multiscale structural similarity for image quality
assessment", 2003) and the mean pairwise MS-SSIM of a set of images: a diversity measure that,
unlike single-scale SSIM, weighs coarse structure (a slice's outline, its ventricles) as well as
fine texture. Lower means more varied; beside real slices' value it says whether samples vary as
much as real brains do (as in Odena et al. 2017's use of it for sample diversity).

The definition as published: an 11x11 Gaussian window (sigma 1.5) without padding, constants
C1 = (0.01 L)^2, C2 = (0.03 L)^2 for images in [0, 1] (L = 1), 2x2 average pooling between
scales; the mean contrast-structure term at every scale but the coarsest, where the mean SSIM
(luminance times contrast-structure) enters; the published weights WEIGHTS (0.0448, 0.2856,
0.3001, 0.2363, 0.1333) for five scales. Five scales need images of at least 11 * 2^4 = 176 px;
smaller images use as many scales as hold a whole window (``scales_for``: 4 at 128 px, the
coarsest 16x16; 3 at 64 px; 2 at 32 px), with the first weights renormalised to sum to 1. At one
scale it is skimage's Gaussian SSIM. Negative terms (anti-correlated images) are clamped to 0
before the power, as common implementations do, so that the product stays real.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from brainvq.errors import DataError
from brainvq.metrics import as_images, pair_indices

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
C1, C2 = 0.01**2, 0.03**2


def _gaussian() -> torch.Tensor:
    """The 1-D Gaussian window, normalised to sum 1."""
    x = torch.arange(WINDOW, dtype=torch.float64) - (WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).float()


_G = _gaussian()


def scales_for(size: int) -> int:
    """How many scales (at most 5) of a ``size``-pixel image still hold a whole window."""
    scales = 0
    while scales < len(WEIGHTS) and size >= WINDOW:
        scales += 1
        size //= 2
    return scales


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, valid region only: (B, 1, H, W) -> (B, 1, H-10, W-10)."""
    x = F.conv2d(x, _G.view(1, 1, 1, WINDOW))
    return F.conv2d(x, _G.view(1, 1, WINDOW, 1))


def _terms(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (SSIM, contrast-structure term), each map averaged over the image."""
    mx, my = _blur(x), _blur(y)
    vx = _blur(x * x) - mx * mx
    vy = _blur(y * y) - my * my
    cov = _blur(x * y) - mx * my
    lum = (2 * mx * my + C1) / (mx * mx + my * my + C1)
    cs = (2 * cov + C2) / (vx + vy + C2)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(x, y, scales: int | None = None) -> torch.Tensor:
    """MS-SSIM of each pair of images x[i], y[i] ((N, H, W) or (N, 1, H, W), uint8 or float in
    [0, 1]): (N,) in [0, 1], 1 for identical images. ``scales``: default as many as fit
    (scales_for)."""
    a, b = as_images(x), as_images(y)
    if a.shape != b.shape:
        raise DataError(f"ms_ssim: images of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    fit = scales_for(min(a.shape[-2:]))
    scales = fit if scales is None else scales
    if not 1 <= scales <= fit:
        raise DataError(
            f"ms_ssim: {scales} scales asked of {tuple(a.shape[-2:])} images; at most {fit} fit "
            f"(each needs a whole {WINDOW}x{WINDOW} window)"
        )
    w = torch.tensor(WEIGHTS[:scales])
    w = w / w.sum()
    out = torch.ones(a.shape[0])
    for s in range(scales):
        full, cs = _terms(a, b)
        term = full if s == scales - 1 else cs  # luminance enters at the coarsest scale only
        out = out * term.clamp_min(0) ** w[s]
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return out


def mean_pairwise_ms_ssim(images, max_pairs: int = 2000, seed: int = 0) -> float:
    """Mean MS-SSIM over distinct pairs of images (all pairs, or a seeded subset of max_pairs)."""
    x = as_images(images)
    n = x.shape[0]
    if n < 2:
        return float("nan")
    i, j = pair_indices(n, max_pairs, seed)
    vals = [ms_ssim(x[i[s : s + 128]], x[j[s : s + 128]]) for s in range(0, len(i), 128)]
    return float(torch.cat(vals).mean())


def scales_note(size: int) -> str:
    """Which scales MS-SSIM uses at ``size`` px, for the table and metrics.json."""
    k = scales_for(size)
    sides = ", ".join(str(size // 2**s) for s in range(k))
    return f"{k} scales ({sides} px), Wang et al. 2003 weights renormalised"
