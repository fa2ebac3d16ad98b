"""Classifier two-sample test (C2ST): can a small CNN tell generated slices from real ones?

Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017. A classifier is trained
fresh to tell two image sets apart and scored on images it did not train on (k-fold cross-
validation, the same number of images a side, balanced accuracy per fold). Reading it: 0.5 means
the classifier cannot tell the sets apart; 1.0 means it tells every held-out image apart; below
0.5 is chance, not "more real than real". Read it beside a real-vs-real reference on the same data
(real test slices against real slices of other brains): that is what a perfect generator scores.

Brains, not slices, are the independent units. Neighbouring axial slices of one brain are near-
twins, so with folds drawn slice by slice the classifier recognises a held-out slice's brain from
its neighbours in training, and real test slices stand apart from real slices of any other brain
(bench/results/c2st.md). Pass ``real_groups`` (a brain label per real image; and ``other_groups``
where the other side has brains too, e.g. reconstructions of the real slices, with the same
labels) so that each brain's slices stay in one fold; the number of folds is then at most the
number of brains a side.

``pool`` averages pool x pool pixel blocks on both sides first. Real slices that were once JPEG
files carry 8x8 block artifacts in their finest texture, which no decoder reproduces; at pool 2
the test asks about everything but that texture.

The classifier is fixed: change it and earlier numbers no longer compare. It shares nothing with
any training discriminator. Input: the image and its 3x3 Laplacian (fine texture, where blur,
noise and decoder artifacts show), each standardised on the training fold. Four stride-2 3x3
convolutions (16, 32, 64, 64 channels) with batch norm and ReLU, mean and max pooled, one linear
logit. Adam with a one-cycle learning rate to 2e-3, batch 32, 8 epochs or 120 steps, whichever is
more; then batch-norm statistics recomputed over the training fold. No augmentation. Why, as
measured on the development data (real test slices against noised, blurred, reconstructed and
other brains' slices) and on synthetic slices:
- without normalisation, noised slices sometimes did not train at all (0.50, training 0.50);
- batch norm's running statistics lag a briefly trained network: its own training images scored
  1.00 in training mode but 0.50-0.68 in eval mode; recomputing them after training fixes it;
- without the Laplacian channel, noised slices scored 0.94 (a fold at 0.81) and reconstructions
  at pool 2 0.76 +- 0.16; with it 1.00 and 0.89 +- 0.09 (both with flips, since dropped), real
  against real 0.41-0.55 either way (2-4 folds of 32-64 slices a side: that is its spread);
- 8 epochs of a small set are too few steps: synthetic noised copies read 0.58-0.64 at 32 steps,
  0.99 at 100;
- left-right flips move a pixel grid's phase (a decoder's checkerboard, the JPEG grid): a
  one-pixel checkerboard read 0.77 with flips, 1.00 without;
- a stride-1 first layer costs 3-11x the time of a stride-2 one at 128x128.
A fold whose classifier cannot fit its own training images (training accuracy < 0.6) is retrained
from another seed, and a warning says so if it never does: a failed fit must not read as
"indistinguishable".
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Hashable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainvq.errors import DataError
from brainvq.nn.batchnorm import refresh_batch_norm
from brainvq.nn.fitting import fit_batches

MIN_PER_SIDE = 10
BATCH_SIZE = 32
LR = 2e-3
EPOCHS = 8
MIN_STEPS = 120  # small sets get more epochs: 8 epochs of 32 images is too few steps to learn
FIT_FLOOR = 0.6  # a fold whose training accuracy stays below this has not trained
RETRIES = 2
LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


class C2STClassifier(nn.Module):
    """The fixed small CNN: image + Laplacian in, four stride-2 convolutions, one logit out."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        chans = [2, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * chans[-1], 1)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised (B, 2, H, W) -> the head's outputs (B, outputs) from the features'
        spatial mean and max."""
        h = self.features(x)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised (B, 2, H, W) -> logits (B,) that an image is from the `other` side."""
        return self.outputs(x)[:, 0]


def as_images(x, name: str = "images") -> torch.Tensor:
    """(N, H, W) uint8 or float in [0, 1], or (N, 1, H, W) -> float32 tensor (N, 1, H, W)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise DataError(
            f"c2st: {name} has shape {a.shape}; give images as (N, H, W) or (N, 1, H, W)"
        )
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(np.float32) / 255.0)[:, None]
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"c2st: {name} are {a.dtype}; give uint8 images or floats in [0, 1]")
    t = torch.from_numpy(a.astype(np.float32))
    if t.numel() and (not bool(torch.isfinite(t).all()) or t.min() < 0 or t.max() > 1):
        raise DataError(f"c2st: {name} hold values outside [0, 1]; scale them to [0, 1]")
    return t[:, None]


def with_laplacian(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 2, H, W): the image and its 3x3 Laplacian (edge pixels replicated)."""
    return torch.cat([x, F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), LAPLACE)], 1)


def _labels(groups: Sequence[Hashable] | None, n: int, side: str) -> list:
    """A fold-grouping label per image: the caller's, else one label per image."""
    if groups is None:
        return [(f"_{side}", i) for i in range(n)]
    labels = groups.tolist() if isinstance(groups, np.ndarray) else list(groups)
    if len(labels) != n:
        raise DataError(
            f"c2st: {side}_groups has {len(labels)} labels for {n} images; give one each"
        )
    return labels


def assign_folds(labels: list[list], folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The fold of each image of each side: every label's images in one fold (on both sides), each
    fold's count per side as even as the labels allow (greedy, largest label first, seeded)."""
    counts: dict = {}
    for side, lab in enumerate(labels):
        for g in lab:
            counts.setdefault(g, [0] * len(labels))[side] += 1
    keys = list(counts)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    keys.sort(key=lambda g: -sum(counts[g]))  # stable: equal sizes keep the seeded order
    load = np.zeros((folds, len(labels)))
    fold_of = {}
    for g in keys:
        add = np.array(counts[g], dtype=float)
        fold_of[g] = f = int(np.argmin(((load + add) ** 2).sum(1)))
        load[f] += add
    return [np.array([fold_of[g] for g in lab]) for lab in labels]


def _train_fold(x: torch.Tensor, y: torch.Tensor, train: np.ndarray, epochs: int, seed: int):
    """(classifier, mean, std): a classifier trained from `seed` on x[train], and the per-channel
    standardisation it expects."""
    mean = x[train].mean((0, 2, 3), keepdim=True)
    std = x[train].std((0, 2, 3), keepdim=True) + 1e-6
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = C2STClassifier()
    per_epoch = math.ceil(len(train) / BATCH_SIZE)
    epochs = max(epochs, math.ceil(MIN_STEPS / per_epoch))
    order = torch.from_numpy(train)

    def batches():  # epochs of shuffled batches over the training fold
        for _ in range(epochs):
            perm = order[torch.randperm(len(order), generator=gen)]
            yield from (perm[i : i + BATCH_SIZE] for i in range(0, len(perm), BATCH_SIZE))

    def loss_of(idx):
        return F.binary_cross_entropy_with_logits(model((x[idx] - mean) / std), y[idx])

    fit_batches(model, batches(), epochs * per_epoch, loss_of, LR)
    # Batch-norm statistics of the trained network over the whole training fold (running
    # averages lag behind a network trained this briefly; eval mode then misreads).
    model = refresh_batch_norm(model, x[order], lambda b: (b - mean) / std)
    return model, mean, std


@torch.no_grad()
def _predict(model: C2STClassifier, x: torch.Tensor, mean, std) -> torch.Tensor:
    """1.0 where the classifier says `other`, else 0.0."""
    return torch.cat(
        [model((x[i : i + 128] - mean) / std) > 0 for i in range(0, len(x), 128)]
    ).float()


def _balanced_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Mean of the two sides' accuracies (plain accuracy when the sides are the same size)."""
    return float(np.mean([float((pred[y == c] == c).float().mean()) for c in (0.0, 1.0)]))


def c2st(
    real,
    other,
    *,
    pool: int = 1,
    folds: int = 5,
    seed: int = 0,
    epochs: int = EPOCHS,
    real_groups: Sequence[Hashable] | None = None,
    other_groups: Sequence[Hashable] | None = None,
    progress: bool = False,
) -> dict:
    """Held-out accuracy of a fresh small CNN telling `other` from `real` (0.5: indistinguishable).

    real, other: (N, H, W) uint8 or float in [0, 1], or (N, 1, H, W), of one size. The larger side
    is subsampled (seeded) to the smaller's count. pool: average pool x pool pixel blocks first.
    real_groups / other_groups: a label (brain) per image, kept whole within one fold. Returns
    accuracy (mean over folds), accuracy_std, folds (per-fold held-out balanced accuracy),
    train_accuracy (per fold), retries, n_per_side, pool, grouped.
    """
    if pool < 1 or folds < 2 or epochs < 1:
        raise DataError(f"c2st: pool={pool}, folds={folds}, epochs={epochs}; need >=1, >=2, >=1")
    a, b = _sides(real, other, pool)
    labels = (_labels(real_groups, len(a), "real"), _labels(other_groups, len(b), "other"))
    x, y, fold_of, k = _folded(a, b, labels, pool, folds, np.random.default_rng(seed))
    accs, fits, retries = _fit_folds(x, y, fold_of, k, epochs, seed, progress)
    n = len(y) // 2
    if min(fits) < FIT_FLOOR:
        warnings.warn(
            f"c2st: the classifier did not fit its own training images in every fold (training "
            f"accuracy {min(fits):.2f}): the two sides hold near-copies, or it failed to train "
            "and the accuracy may read near 0.5 for sets it could tell apart",
            stacklevel=2,
        )
    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "folds": accs,
        "train_accuracy": fits,
        "retries": retries,
        "n_per_side": n,
        "pool": pool,
        "grouped": real_groups is not None or other_groups is not None,
    }


def _sides(real, other, pool: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides as (N, 1, H, W) float images of one size, large enough for ``pool``."""
    a, b = as_images(real, "real images"), as_images(other, "other images")
    if a.shape[2:] != b.shape[2:]:
        raise DataError(
            f"c2st: real images are {tuple(a.shape[2:])} but other images {tuple(b.shape[2:])}; "
            "resize one side to the other's size"
        )
    if min(a.shape[2:]) < 16 * pool:
        raise DataError(f"c2st: {tuple(a.shape[2:])} images are too small for pool={pool}")
    return a, b


def _folded(a, b, labels, pool: int, folds: int, rng) -> tuple:
    """(inputs x, labels y: 0 real 1 other, fold of each, folds k): as many images a side
    (seeded), pooled, with their Laplacian; each group kept whole in one fold."""
    labels_a, labels_b = labels
    n = min(len(a), len(b))
    if n < MIN_PER_SIDE:
        raise DataError(
            f"c2st: {len(a)} real and {len(b)} other images; give at least {MIN_PER_SIDE} a side"
        )
    keep_a = np.sort(rng.choice(len(a), n, replace=False))
    keep_b = np.sort(rng.choice(len(b), n, replace=False))
    labels_a, labels_b = [labels_a[i] for i in keep_a], [labels_b[i] for i in keep_b]
    k = min(folds, len(set(labels_a)), len(set(labels_b)))
    if k < 2:
        raise DataError(
            "c2st: all images of one side share one group label; give at least two groups "
            "(brains) a side, or no groups"
        )
    fold_a, fold_b = assign_folds([labels_a, labels_b], k, rng)
    x = torch.cat([a[keep_a], b[keep_b]])
    if pool > 1:
        x = F.avg_pool2d(x, pool)
    x = with_laplacian(x)
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    if any(f not in fold_a or f not in fold_b for f in range(k)):
        raise DataError(
            f"c2st: the groups do not spread over {k} folds on both sides; give more groups "
            "(brains) or fewer folds"
        )
    return x, y, np.concatenate([fold_a, fold_b]), k


def _fit_folds(x, y, fold_of, k: int, epochs: int, seed: int, progress: bool) -> tuple:
    """(held-out accuracy per fold, training accuracy per fold, retries): a fresh classifier
    per fold, retried with another seed where it does not fit its own training images."""
    accs, fits, retries = [], [], 0
    for f in range(k):
        train, held = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        for attempt in range(RETRIES + 1):
            model, mean, std = _train_fold(x, y, train, epochs, seed * 1000 + 100 * attempt + f)
            fit = _balanced_accuracy(_predict(model, x[train], mean, std), y[train])
            if fit >= FIT_FLOOR:
                break
            retries += 1
        accs.append(_balanced_accuracy(_predict(model, x[held], mean, std), y[held]))
        fits.append(fit)
        if progress:
            print(
                f"c2st fold {f + 1}/{k}: held-out {accs[-1]:.3f}, train {fit:.3f}", file=sys.stderr
            )
    return accs, fits, retries


def describe(result: dict, what: str = "samples") -> str:
    """One plain-words line for a c2st result: accuracy, spread, and how to read it."""
    where = (
        "full resolution" if result["pool"] == 1 else f"{result['pool']}x{result['pool']} averaged"
    )
    return (
        f"C2ST {what} vs real test slices ({where}): accuracy {result['accuracy']:.2f} "
        f"+- {result['accuracy_std']:.2f} over {len(result['folds'])} folds, "
        f"{result['n_per_side']} a side (0.5 = a classifier cannot tell them apart, 1.0 = it always can)"
    )
