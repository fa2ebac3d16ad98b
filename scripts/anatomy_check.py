"""The by-eye check of the anatomy rule (brainvq.data.anatomy): real slices of several brains at
several levels, the brain's outline (yellow) and the ventricle mask (red) drawn over them, the
fractions written above each.

    python scripts/anatomy_check.py /work/shared/data/brain-mri-128 docs/anatomy_check.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from brainvq.config import DataConfig
from brainvq.data import load_data
from brainvq.data.anatomy import masks


def pick(subjects: np.ndarray, levels: np.ndarray, count: int, seed: int) -> list[int]:
    """``count`` slices of different brains at evenly rising relative levels."""
    rng = np.random.default_rng(seed)
    brains = rng.permutation(sorted(set(subjects)))
    out = []
    for k in range(count):
        s = brains[k % len(brains)]
        idx = np.flatnonzero(subjects == s)
        idx = idx[np.argsort(levels[idx])]
        out.append(int(idx[round((k + 0.5) / count * (len(idx) - 1))]))
    return out


def main() -> None:
    """Write the figure."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--split", default="test")
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    splits, arrays = load_data(a.data, DataConfig(image_size=128), progress=False)
    images = arrays[a.split]
    chosen = pick(splits.subjects[a.split], splits.levels[a.split], a.n, a.seed)
    cols = 4
    rows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows))
    for ax, i in zip(np.ravel(axes), chosen, strict=False):
        img = images[i]
        brain, vent = masks(img)
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.contour(brain, levels=[0.5], colors="yellow", linewidths=0.8)
        overlay = np.zeros((*img.shape, 4))
        overlay[vent] = (1, 0, 0, 0.55)
        ax.imshow(overlay)
        s, z = splits.subjects[a.split][i], splits.levels[a.split][i]
        ax.set_title(f"{s} z={z}\nbrain {brain.mean():.3f}  vent {vent.mean():.4f}", fontsize=8)
        ax.axis("off")
    for ax in np.ravel(axes)[len(chosen) :]:
        ax.axis("off")
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
