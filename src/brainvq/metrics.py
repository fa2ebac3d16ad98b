"""Measures everyone uses the same way (docs/measures.md): pure functions of tensors, no I/O.

- `ssim_reference`: skimage's structural_similarity(x, y, data_range=1.0) with its defaults.
- `ssim`: the same definition in torch, batched and differentiable (7x7 uniform window, sample
  covariance, the mean over the window-valid region); a test checks it matches skimage within 1e-3.
  The VQ-VAE's image loss uses it too.
- `top_ssim_against` / `max_ssim_against`: nearest neighbours by SSIM (NN-SSIM).
- `mean_pairwise_ssim`: how alike a set of images is (diversity).
- PSNR, codebook usage and perplexity.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from skimage.metrics import structural_similarity

_WIN = 7
_K1, _K2 = 0.01, 0.03


def as_images(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S) or float (N, 1, S, S) / (N, S, S) -> float (N, 1, S, S) in [0, 1]."""
    t = torch.from_numpy(np.array(x)) if not isinstance(x, torch.Tensor) else x
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    if t.dim() == 3:
        t = t[:, None]
    return t.float()


def ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """skimage's SSIM of two 2-D images in [0, 1] (the project's reference definition)."""
    return float(structural_similarity(x, y, data_range=1.0))


def _box(x: torch.Tensor) -> torch.Tensor:
    """Mean over each valid 7x7 window of (N, 1, H, W), by running sums along each axis."""
    c = x.cumsum(2)
    c = torch.cat([c[:, :, _WIN - 1 : _WIN], c[:, :, _WIN:] - c[:, :, :-_WIN]], 2)
    c = c.cumsum(3)
    c = torch.cat([c[:, :, :, _WIN - 1 : _WIN], c[:, :, :, _WIN:] - c[:, :, :, :-_WIN]], 3)
    return c / (_WIN * _WIN)


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = _box(x)
    return mu, _box(x * x)


def _ssim_from(mx, xx, my, yy, xy) -> torch.Tensor:
    cov_norm = _WIN * _WIN / (_WIN * _WIN - 1.0)
    vx = cov_norm * (xx - mx * mx)
    vy = cov_norm * (yy - my * my)
    vxy = cov_norm * (xy - mx * my)
    c1, c2 = _K1**2, _K2**2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of (B, 1, H, W) batches in [0, 1], as skimage defines it; returns (B,)."""
    x, y = x.float(), y.float()
    mx, xx = _stats(x)
    my, yy = _stats(y)
    return _ssim_from(mx, xx, my, yy, _box(x * y)).float()


@torch.no_grad()
def top_ssim_against(
    queries: torch.Tensor,
    refs: torch.Tensor,
    k: int = 1,
    chunk: int = 256,
    exclude_self: bool = False,
    candidates: int = 0,
    done: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query image, its k highest SSIMs against the refs, highest first, and those refs'
    indices: both (M, k). ``done(1)`` is called after each query (progress).

    queries (M, 1, H, W) and refs (N, 1, H, W) in [0, 1]; k <= N. With exclude_self, query i is
    not compared with ref i (for scoring a set against itself). With candidates=c > 0, SSIM is
    computed exactly against the c refs nearest to each query in L2 distance only (a shortlist
    that makes large training sets affordable); 0 searches all refs.
    """
    refs = refs.float()
    queries = queries.float()
    n = refs.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k = {k}: must be between 1 and the {n} refs")
    shortlist = None
    if 0 < candidates < n:
        q_flat, r_flat = queries.flatten(1), refs.flatten(1)
        d2 = (q_flat.pow(2).sum(1, keepdim=True) - 2 * q_flat @ r_flat.t()) + r_flat.pow(2).sum(1)
        if exclude_self:
            d2[torch.arange(len(queries)), torch.arange(len(queries))] = float("inf")
        shortlist = d2.topk(max(candidates, k), dim=1, largest=False).indices
    else:
        r_mu, r_sq = _stats(refs)
    best = torch.full((queries.shape[0], k), -2.0)
    where = torch.zeros(queries.shape[0], k, dtype=torch.long)
    for i in range(queries.shape[0]):
        q = queries[i : i + 1]
        q_mu, q_sq = _stats(q)
        idx = shortlist[i] if shortlist is not None else torch.arange(n)
        for s in range(0, len(idx), chunk):
            sel = idx[s : s + chunk]
            r = refs[sel]
            if shortlist is not None:
                mu, sq = _stats(r)
            else:
                mu, sq = r_mu[sel], r_sq[sel]
            vals = _ssim_from(q_mu, q_sq, mu, sq, _box(q * r))
            if exclude_self:
                vals[sel == i] = -2.0
            v, j = torch.cat([best[i], vals]).topk(k)
            where[i] = torch.cat([where[i], sel])[j]
            best[i] = v
        if done is not None:
            done(1)
    return best, where


def max_ssim_against(
    queries: torch.Tensor,
    refs: torch.Tensor,
    chunk: int = 256,
    exclude_self: bool = False,
    candidates: int = 0,
    done: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query image, its highest SSIM against any ref and that ref's index (M,) each;
    see top_ssim_against."""
    best, where = top_ssim_against(queries, refs, 1, chunk, exclude_self, candidates, done)
    return best[:, 0], where[:, 0]


def pair_indices(n: int, max_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, j) of the distinct pairs among n images: all of them, or a seeded subset of max_pairs."""
    i, j = torch.triu_indices(n, n, offset=1)
    if len(i) > max_pairs:
        pick = torch.randperm(len(i), generator=torch.Generator().manual_seed(seed))[:max_pairs]
        i, j = i[pick], j[pick]
    return i, j


@torch.no_grad()
def mean_pairwise_ssim(images, max_pairs: int = 5000, seed: int = 0) -> float:
    """Mean SSIM over distinct pairs of images (all pairs, or a seeded subset of max_pairs)."""
    x = as_images(images)
    i, j = pair_indices(x.shape[0], max_pairs, seed)
    vals = [ssim(x[i[s : s + 256]], x[j[s : s + 256]]) for s in range(0, len(i), 256)]
    return float(torch.cat(vals).mean())


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for (B, 1, H, W) images in [0, 1]; returns (B,)."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def code_histogram(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Counts of each code over a stack of code maps; returns (K,) int64."""
    return torch.bincount(codes.reshape(-1).long(), minlength=codebook_size)


def codebook_stats(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Share of codes used, number used and perplexity of the code distribution."""
    counts = code_histogram(codes, codebook_size).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    perplexity = float(torch.exp(-(nz * nz.log()).sum()))
    used = int((counts > 0).sum())
    return {
        "codes_used": used,
        "codebook_usage": used / codebook_size,
        "perplexity": perplexity,
    }


def summarize(values: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Mean, std, min, max and median of a 1-D set of values."""
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
        "median": float(np.median(a)),
    }
