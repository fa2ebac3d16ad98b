"""Figures of a run (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from brainvq.evaluation.keys import COPY_THRESHOLD, REALISM_RATIO
from brainvq.evaluation.measure import Context
from brainvq.evaluation.prior_test import reconstructions
from brainvq.io import atomic_write_bytes
from brainvq.metrics import code_histogram
from brainvq.runs import Run
from brainvq.sampling import image_grid

GRID = 16  # slices in each of the report's side-by-side grids (samples, real test slices)


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


def pair_by_level(
    sample_levels: np.ndarray, recon_levels: np.ndarray, n: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(sample indices, reconstruction indices) of up to n pairs at the same axial level: samples
    spread evenly over their levels (relative, 0 lowest to 1 highest; NaN unknown, placed
    after), each beside the reconstruction nearest its level (without levels on a side, spread
    over that side in order)."""
    s_lv = np.asarray(sample_levels, dtype=float)
    r_lv = np.asarray(recon_levels, dtype=float)
    k = min(n, len(s_lv), len(r_lv))
    if k == 0:
        return np.zeros(0, int), np.zeros(0, int)
    order = np.argsort(np.where(np.isnan(s_lv), np.inf, s_lv), kind="stable")
    pick = order[np.linspace(0, len(order) - 1, k).round().astype(int)]
    known = ~np.isnan(r_lv)
    spread = np.linspace(0, len(r_lv) - 1, k).round().astype(int)
    if not known.any():
        return pick, spread
    recon_order = np.flatnonzero(known)
    near = []
    for j, i in enumerate(pick):
        if np.isnan(s_lv[i]):
            near.append(spread[j])
        else:
            near.append(recon_order[np.argmin(np.abs(r_lv[recon_order] - s_lv[i]))])
    return pick, np.array(near, dtype=int)


def beside_recons_figure(
    run: Run,
    kind: str,
    drawn: dict,
    nearest_train: np.ndarray,
    splits,
    reference: str,
    path: Path,
    data: str | None = None,
) -> Path:
    """The figure that says why a classifier tells samples apart: 8 samples (top) above the
    reconstructions of real ``reference`` slices at the same axial levels (same decoder). A
    sample's level is the one it was drawn at (a level-conditioned prior), else its nearest
    training slice's (``nearest_train``: that slice's index per sample)."""
    images = drawn["images"]
    rel = splits.relative_levels()
    lv = np.asarray(drawn.get("levels", np.full(len(images), np.nan)), dtype=float)
    train_lv = np.asarray(rel.get("train", np.full(0, np.nan)), dtype=float)
    if len(train_lv):
        lv = np.where(np.isnan(lv), train_lv[np.asarray(nearest_train)], lv)
    recons = reconstructions(run, reference, kind, data)
    ref_lv = rel.get(reference, np.full(len(recons), np.nan))
    si, ri = pair_by_level(lv, ref_lv)
    notes = ["level ?" if np.isnan(lv[i]) else f"level {lv[i]:.2f}" for i in si]
    return rows_figure(
        [("samples", images[si]), (f"reconstructed\nreal {reference}", recons[ri])],
        path,
        f"{kind} samples above reconstructions of real {reference} slices at the same levels "
        "(same decoder: only the code maps differ)",
        notes,
    )


def real_grid(test: np.ndarray, levels: list, path: Path, n: int = GRID) -> Path:
    """Up to n real test slices, (N, S, S) in [0, 1], evenly spread in axial level where the
    levels are known, tiled like the samples' grid (4 columns)."""
    order = np.argsort([-1 if lv is None else lv for lv in levels], kind="stable")
    pick = order[np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int)]
    return image_grid(test[pick], path, ncol=4)


def vqvae_figures(run: Run, x: np.ndarray, recons: np.ndarray, scores, codes, splits) -> None:
    """The VQ-VAE's figures: reconstructions (``x`` the test slices in [0, 1], ``scores`` their
    SSIMs), real test slices, training curves and codebook use of the test ``codes``."""
    figs = run.dir.figures
    recon_figure(x, recons, scores, figs / "reconstructions.png")
    real_grid(x, splits.slice_levels("test"), figs / "real_test_slices.png")
    log = read_csv_log(run.dir.logs / "vqvae" / "metrics.csv")
    if log:
        curves_figure(log, figs / "vqvae_curves.png", "VQ-VAE training")
    counts = code_histogram(codes, run.config.vqvae.codebook_size).numpy()
    codebook_figure(counts, figs / "codebook_usage.png", "Codebook usage on the test split")


def sample_figures(ctx: Context, scores: dict) -> None:
    """A prior's figures from its measures (ctx.per_item of the nearest-neighbour measure): the
    best sample beside its nearest training slice, samples beside reconstructions, grids, the
    closest pairs, the NN-SSIM histogram, real slices' pairs, a code map and training curves."""
    run, kind, images, per = ctx.run, ctx.kind, ctx.images, ctx.per_item
    figs, train, ref = run.dir.figures, ctx.train, ctx.reference
    best = int(np.argmax(per["nn_ssim"]))
    nearest_pair_figure(
        images[best],
        train[per["nearest"][best]] / 255.0,
        float(per["nn_ssim"][best]),
        figs / f"{kind}_best_vs_nearest.png",
        f"the best of {len(images)} {kind} samples",
    )
    beside = figs / f"{kind}_beside_recons.png"
    beside_recons_figure(run, kind, ctx.drawn, per["nearest"], ctx.splits, ref, beside, ctx.root)
    image_grid(images[:64], figs / f"{kind}_samples.png")
    image_grid(images[:GRID], figs / f"{kind}_sample_grid.png", ncol=4)
    _pair_figures(ctx, scores)
    code_map_figure(
        ctx.codes[best].numpy(), images[best], figs / f"{kind}_code_map.png",
        run.config.vqvae.codebook_size,
    )  # fmt: skip
    log = read_csv_log(run.dir.logs / f"prior-{kind}" / "metrics.csv")
    if log:
        curves_figure(log, figs / f"prior_{kind}_curves.png", f"{kind} prior training")


def _pair_figures(ctx: Context, scores: dict) -> None:
    """The samples closest to a training slice above it, the NN-SSIM histogram, and real slices
    above their nearest training slices (what a realism ratio of 1 asks)."""
    kind, per, figs, train = ctx.kind, ctx.per_item, ctx.run.dir.figures, ctx.train
    top = np.argsort(per["nn_ssim"])[::-1][:8]  # the 8 samples closest to a training slice
    rows_figure(
        [("samples", ctx.images[top]), ("nearest\ntraining", train[per["nearest"][top]] / 255)],
        figs / f"{kind}_nearest_pairs.png",
        f"The {len(top)} {kind} samples closest to a training slice, above that slice",
        [f"SSIM {v:.2f}" for v in per["nn_ssim"][top]],
    )
    nn_ssim_histogram_figure(
        per["nn_ssim"],
        per["real_nn_ssim"],
        scores[COPY_THRESHOLD],
        figs / f"{kind}_nn_ssim.png",
        f"{kind}: realism ratio {scores[REALISM_RATIO]:.3f}",
    )
    real_nn = per["real_nn_ssim"]
    real_pick = np.linspace(0, len(real_nn) - 1, min(8, len(real_nn))).round().astype(int)
    ref = ctx.reference
    rows_figure(
        [
            (f"real {ref}", ctx.real[real_pick] / 255.0),
            ("nearest\ntraining", train[per["real_nearest"][real_pick]] / 255.0),
        ],
        figs / "real_nearest_pairs.png",
        f"Real {ref} slices above their nearest training slices: what a realism ratio of 1 asks",
        [f"SSIM {v:.2f}" for v in real_nn[real_pick]],
    )
