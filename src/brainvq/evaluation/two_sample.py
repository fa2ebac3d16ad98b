"""evaluate's classifier two-sample tests (brainvq.evaluation.c2st, the classifier itself unchanged):
folds by brain from a run's splits, the `c2st` entry of a metrics.json section, its table rows and
its plain-words line. The prior's own test, against reconstructions of real brains, is
brainvq.evaluation.prior_test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainvq.config import EvalConfig
from brainvq.data import Splits
from brainvq.evaluation.c2st import MIN_PER_SIDE, c2st
from brainvq.progress import Progress

C2ST_POOLS = (1, 2)  # full resolution; 2x2 pixel blocks averaged (past the JPEG-block texture)
C2ST_MEANS = "0.5 = a classifier cannot tell them from real test slices, 1.0 = it always can"


def c2st_folds(splits: Splits, split: str = "test") -> tuple[list | None, str]:
    """The brain of each real slice of ``split`` as C2ST fold groups (None: folds drawn slice by
    slice, where the split's slices carry no subject or all come from one brain) and a note."""
    subjects = splits.subjects.get(split)
    known = subjects is not None and len(subjects) and all(s != "" for s in subjects)
    brains = len(set(subjects)) if known else 0
    if brains < 2:
        why = "one brain" if brains == 1 else f"no subjects in the {split} names"
        return None, (
            f"folds by slice ({why}): neighbouring slices of one brain tell even real slices "
            "apart, so read it against real slices' own score"
        )
    return [str(s) for s in subjects], f"folds by brain ({brains} {split} brains)"


def c2st_scores(
    test: np.ndarray,
    other: np.ndarray,
    splits: Splits,
    ev: EvalConfig,
    paired: bool = False,
    progress: bool = False,
    split: str = "test",
) -> dict | None:
    """C2ST of `other` (N, S, S) in [0, 1] against the real slices ``test`` of ``split`` (test,
    or the validation split when eval.reference says so) at each of C2ST_POOLS:
    the `c2st` entry of a metrics.json section, or None when eval.c2st is off.

    Folds keep each real test brain whole. paired: `other` are the test slices' own
    reconstructions, which carry the same brain labels; otherwise (samples, which have no brain)
    each image is dealt to a fold at random. A set too small or too small an image is skipped,
    with the reason."""
    if not ev.c2st:
        return None
    groups, note = c2st_folds(splits, split)
    other_groups = groups if paired else None
    out = pooled_c2st(test, other, C2ST_POOLS, ev.c2st_folds, ev.seed, groups, other_groups,
                      progress=progress)  # fmt: skip
    if "skipped" not in out:
        out.update(reading=C2ST_MEANS, folds_by=note)
    return out


def pooled_c2st(
    real: np.ndarray,
    other: np.ndarray,
    pools: Sequence[int] = (1, 2, 4),
    folds: int = 5,
    seed: int = 0,
    real_groups: list | None = None,
    other_groups: list | None = None,
    n: int | None = None,
    progress: bool = False,
    label: str = "classifier two-sample test",
) -> dict:
    """c2st of ``other`` against ``real`` at each pool the image size allows (16 px a side left
    after pooling), at most ``n`` a side: {"pool{p}": accuracy, "pool{p}_std", "pool{p}_folds",
    "n_per_side", "pools"}, or {"skipped": why}."""
    if n is not None:
        real, real_groups = _subsample(real, real_groups, n, seed)
        other, other_groups = _subsample(other, other_groups, n, seed + 1)
    size = min(real.shape[1:]) if real.ndim == 3 and len(real) else 0
    fits = [p for p in pools if size >= 16 * p]
    per_side = min(len(real), len(other))
    if per_side < MIN_PER_SIDE or not fits:
        why = f"{per_side} images a side" if per_side < MIN_PER_SIDE else f"{size}px images"
        return {"skipped": f"{why}: too few for a classifier two-sample test"}
    out: dict = {"pools": fits}
    with Progress(len(fits), label, "pool", progress) as bar:
        for pool in fits:
            r = c2st(
                real, other, pool=pool, folds=folds, seed=seed,
                real_groups=real_groups, other_groups=other_groups,
            )  # fmt: skip
            out[f"pool{pool}"] = r["accuracy"]
            out[f"pool{pool}_std"] = r["accuracy_std"]
            out[f"pool{pool}_folds"] = [round(a, 4) for a in r["folds"]]
            out["n_per_side"] = r["n_per_side"]
            bar.update()
    return out


def _subsample(images: np.ndarray, groups: list | None, n: int, seed: int):
    """At most n images (seeded, order kept) and their group labels."""
    if len(images) <= n:
        return images, groups
    keep = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return images[keep], None if groups is None else [groups[i] for i in keep]
