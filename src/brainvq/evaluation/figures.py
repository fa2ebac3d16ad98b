"""Figures of a run (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from brainvq.io import atomic_write_bytes


def _subplots(*grid: int, figsize: tuple[float, float], **kw):
    """A figure (matplotlib's object API: no display, no global state) and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kw)


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_csv_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Lightning's metrics.csv as {metric: [(step, value), ...]} skipping empty cells."""
    out: dict[str, list[tuple[int, float]]] = {}
    if not path.exists():
        return out
    with path.open() as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for k, v in row.items():
                if k in ("step", "epoch") or v in ("", None):
                    continue
                out.setdefault(k, []).append((step, float(v)))
    return out


def recon_figure(originals: np.ndarray, recons: np.ndarray, scores: np.ndarray, path: Path) -> Path:
    """Best, median and worst reconstructions: original, reconstruction, |difference|."""
    order = np.argsort(scores)
    picks = [("worst", order[0]), ("median", order[len(order) // 2]), ("best", order[-1])]
    fig, axes = _subplots(3, 3, figsize=(7.5, 7.8))
    for col, (label, i) in enumerate(picks):
        diff = np.abs(originals[i].astype(np.float32) - recons[i].astype(np.float32))
        for row, (img, title) in enumerate(
            [(originals[i], "original"), (recons[i], "reconstruction"), (diff, "|difference|")]
        ):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1 if row < 2 else max(diff.max(), 1e-3))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{label}: SSIM {scores[i]:.3f}", fontsize=10)
            if col == 0:
                ax.set_ylabel(title)
    fig.suptitle("VQ-VAE reconstructions of test slices")
    return _save(fig, path)


def curves_figure(log: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path:
    """One panel per logged metric (loss, usage, validation SSIM, ...) against step."""

    def wanted(k: str) -> bool:  # per-epoch curves, unless there are too few epochs to draw
        if k.endswith("_step"):
            return len(log.get(k.replace("_step", "_epoch"), [])) < 3
        if k.endswith("_epoch"):
            return len(log[k]) >= 3 or k.replace("_epoch", "_step") not in log
        return True

    keys = [k for k in log if wanted(k) and len(log[k]) > 0]
    n = max(len(keys), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys, strict=False):
        steps, vals = zip(*log[k], strict=True)
        ax.plot(steps, vals, marker="." if len(vals) < 50 else None)
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def codebook_figure(counts: np.ndarray, path: Path, title: str) -> Path:
    """Code usage counts, sorted from most to least used, on a log scale; unused codes (no bar on
    a log axis) are a shaded span with their number."""
    fig, ax = _subplots(figsize=(7, 3.2))
    c = np.sort(np.asarray(counts))[::-1]
    used = int((c > 0).sum())
    if used:
        ax.bar(np.arange(used), c[:used], width=1.0, color="tab:blue", label="used codes")
        ax.set_yscale("log")
    if used < len(c):
        ax.axvspan(used - 0.5, len(c) - 0.5, color="0.85", label=f"{len(c) - used} unused codes")
    ax.set_xlim(-0.5, len(c) - 0.5)
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("uses on test split")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{title}: {used}/{len(counts)} codes used")
    return _save(fig, path)


def rows_figure(
    rows: list[tuple[str, np.ndarray]], path: Path, title: str, notes: list[str] | None = None
) -> Path:
    """Rows of images (each (N, H, W) in [0, 1]), each row labelled on its left; ``notes``, one
    per column, under the last row (e.g. each pair's SSIM)."""
    ncol = max(len(images) for _, images in rows)
    fig, axes = _subplots(
        len(rows), ncol, figsize=(1.45 * ncol + 1.2, 1.55 * len(rows) + 0.5), squeeze=False
    )
    for r, (label, images) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if notes and r == len(rows) - 1 and c < len(notes):
                ax.set_xlabel(notes[c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def nearest_pair_figure(
    sample: np.ndarray, nearest: np.ndarray, score: float, path: Path, title: str
) -> Path:
    """A generated slice beside its nearest training slice, with their SSIM."""
    fig, axes = _subplots(1, 2, figsize=(6.4, 3.5))
    for ax, img, label in zip(
        axes, (sample, nearest), ("new sample", "its nearest training slice"), strict=True
    ):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(f"{title}: SSIM {score:.3f}")
    return _save(fig, path)


def nn_ssim_histogram_figure(
    sample_nn: np.ndarray,
    real_nn: np.ndarray,
    copy_threshold: float,
    path: Path,
    title: str,
) -> Path:
    """How close samples come to the training slices beside how close real unseen slices come:
    histograms of NN-SSIM, their means, and the copy line."""
    fig, ax = _subplots(figsize=(6.4, 3.6))
    lo = min(float(np.min(sample_nn)), float(np.min(real_nn)), copy_threshold) - 0.01
    bins = np.linspace(lo, 1.0, 41)
    for vals, label, colour in (
        (sample_nn, f"samples (n={len(sample_nn)})", "tab:blue"),
        (real_nn, f"real test slices (n={len(real_nn)})", "tab:orange"),
    ):
        ax.hist(vals, bins=bins, density=True, alpha=0.5, color=colour, label=label)
        ax.axvline(float(np.mean(vals)), color=colour, linestyle="--", linewidth=1)
    ax.axvline(copy_threshold, color="tab:red", linewidth=1, label="copy line")
    ax.set_xlabel("NN-SSIM (highest SSIM against the training split); dashed: means")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def neighbour_profile_figure(profiles: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """For each named set, the mean SSIM to its k-th nearest training slice against k (log
    axis): real slices of brains the training split holds start high and fall after their
    near-twins; samples of new brains stay flat."""
    fig, ax = _subplots(figsize=(6.4, 3.8))
    for name, top in profiles.items():
        mean = np.asarray(top).mean(0)
        ax.plot(np.arange(1, len(mean) + 1), mean, marker="o", ms=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("rank k of the training slice (1 = nearest)")
    ax.set_ylabel("mean SSIM to the k-th nearest")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def code_map_figure(codes: np.ndarray, image: np.ndarray, path: Path, codebook_size: int) -> Path:
    """A sampled code map (indices as colours) beside the slice the decoder makes of it."""
    fig, axes = _subplots(1, 2, figsize=(8.2, 3.6))
    im = axes[0].imshow(
        codes, cmap="nipy_spectral", vmin=0, vmax=codebook_size - 1, interpolation="nearest"
    )
    axes[0].set_title(f"code map {codes.shape[0]}x{codes.shape[1]}")
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04, label="code index")
    axes[1].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("decoded slice")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)
