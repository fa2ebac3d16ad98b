"""Do samples asked for at a level look like that level, and are generated stacks coherent?

- A level classifier: a small CNN trained on real training slices to tell a slice's level band
  (``bands`` equal shares of 0 .. 1, the relative level within its brain) and, from a second
  head, its relative level itself. Its band accuracy on real test slices (new brains) is the
  reference; on samples asked for at level z, how often it names z's band says whether the
  prior's level conditioning works.
- Per-band realism: samples of a band scored (brainvq.evaluation.realism.score_samples) against
  the real test slices of that band: realism ratio, diversity, copies.
- Stack coherence: mean SSIM between adjacent slices of generated stacks, beside the same for
  real stacks (a subject's slices in level order), and along each stack the Spearman
  correlation of the classifier's predicted level with the slice's place in the stack.

The classifier is fixed (changing it makes earlier numbers incomparable): images average-pooled
to at most 64x64; four stride-2 3x3 convolutions (16, 32, 64, 64 channels) with batch norm and
ReLU; mean and max pooled; a linear band head (cross-entropy) and a linear level head (squared
error, weighted 4); random shifts of up to 1/16 of the side and brightness x0.9-1.1 in
training; Adam 2e-3 with a one-cycle schedule, batch 32, ``steps`` steps; batch-norm statistics
recomputed over the training images at the end (as in brainvq.evaluation.c2st).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainvq.data.levels import level_band
from brainvq.errors import DataError
from brainvq.evaluation.realism import score_samples
from brainvq.metrics import as_images, ssim
from brainvq.nn.batchnorm import refresh_batch_norm
from brainvq.nn.fitting import fit_batches

MAX_SIDE = 64
BATCH_SIZE = 32
LR = 2e-3
LEVEL_WEIGHT = 4.0


class LevelClassifier(nn.Module):
    """Image (B, 1, s, s) -> (band logits (B, bands), relative level (B,))."""

    def __init__(self, bands: int = 4, width: int = 16) -> None:
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.band = nn.Linear(2 * chans[-1], bands)
        self.level = nn.Linear(2 * chans[-1], 1)
        self.bands = bands
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features((x - self.mean) / self.std)
        h = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return self.band(h), self.level(h)[:, 0]


def _prepare(images) -> torch.Tensor:
    """uint8 (N, S, S) or floats in [0, 1] -> float (N, 1, s, s), s <= MAX_SIDE."""
    x = as_images(images)
    if x.shape[-1] > MAX_SIDE:
        x = F.adaptive_avg_pool2d(x, MAX_SIDE)
    return x


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random whole-pixel shifts (up to 1/16 of the side, zero fill) and brightness scaling."""
    n, _, s, _ = x.shape
    m = max(1, s // 16)
    pad = F.pad(x, (m, m, m, m))
    dx, dy = torch.randint(0, 2 * m + 1, (2, n), generator=gen)
    out = torch.stack([pad[i, :, dy[i] : dy[i] + s, dx[i] : dx[i] + s] for i in range(n)])
    scale = 0.9 + 0.2 * torch.rand(n, 1, 1, 1, generator=gen)
    return (out * scale).clamp(0, 1)


def fit_level_classifier(
    images, levels, bands: int = 4, steps: int = 600, seed: int = 0
) -> LevelClassifier:
    """A LevelClassifier trained from ``seed`` on real slices and their relative levels
    (NaN = unknown, left out)."""
    lv = torch.as_tensor(np.asarray(levels, dtype=np.float32))
    keep = ~torch.isnan(lv)
    if int(keep.sum()) < 2 * bands:
        raise DataError(
            f"{int(keep.sum())} slices with a level: the level classifier needs at least "
            f"{2 * bands}; give slices named with their level (slice_Z)"
        )
    x, lv = _prepare(images)[keep], lv[keep]
    y = torch.from_numpy(level_band(lv.numpy(), bands))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LevelClassifier(bands)
    model.mean.fill_(float(x.mean()))
    model.std.fill_(float(x.std()) + 1e-6)

    def batches():  # full batches from shuffles of the slices, a new shuffle when one runs out
        perm, pos = torch.randperm(len(x), generator=gen), 0
        for _ in range(steps):
            if pos + BATCH_SIZE > len(perm):
                perm, pos = torch.randperm(len(x), generator=gen), 0
            yield perm[pos : pos + BATCH_SIZE]
            pos += BATCH_SIZE

    def loss_of(idx):
        logits, level = model(_augment(x[idx], gen))
        return F.cross_entropy(logits, y[idx]) + LEVEL_WEIGHT * F.mse_loss(level, lv[idx])

    fit_batches(model, batches(), steps, loss_of, LR)
    return refresh_batch_norm(model, x)


@torch.no_grad()
def predict_levels(model: LevelClassifier, images) -> tuple[np.ndarray, np.ndarray]:
    """(band (N,) int, relative level (N,) float) the classifier sees in each image."""
    x = _prepare(images)
    bands, lv = [], []
    for i in range(0, len(x), 128):
        logits, level = model(x[i : i + 128])
        bands.append(logits.argmax(1))
        lv.append(level)
    return torch.cat(bands).numpy(), torch.cat(lv).numpy()


def band_accuracy(model: LevelClassifier, images, levels) -> float:
    """Share of images (with a known level) whose band the classifier names right."""
    lv = np.asarray(levels, dtype=np.float64)
    keep = ~np.isnan(lv)
    pred = predict_levels(model, np.asarray(images)[keep])[0]
    return float((pred == level_band(lv[keep], model.bands)).mean())


def spearman(x, y) -> float:
    """Spearman's rank correlation of two 1-D sequences (ties ranked by order)."""
    rx = np.argsort(np.argsort(np.asarray(x), kind="stable"), kind="stable").astype(np.float64)
    ry = np.argsort(np.argsort(np.asarray(y), kind="stable"), kind="stable").astype(np.float64)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / den) if den else float("nan")


def real_stacks(images, subjects, levels, length: int | None = None) -> list[np.ndarray]:
    """Each subject's slices in level order, (S, H, W) each; with ``length``, only subjects with
    that many slices."""
    images = np.asarray(images)
    out = []
    for s in dict.fromkeys(x for x in subjects if x):
        idx = [i for i in range(len(subjects)) if subjects[i] == s and levels[i] >= 0]
        idx.sort(key=lambda i: levels[i])
        if len(idx) > 1 and (length is None or len(idx) == length):
            out.append(images[idx])
    return out


@torch.no_grad()
def adjacent_ssim(stacks) -> np.ndarray:
    """SSIM of each pair of adjacent slices in each stack (S, H, W): (pairs,) over all stacks."""
    vals = [ssim(as_images(s[:-1]), as_images(s[1:])).numpy() for s in stacks if len(s) > 1]
    return np.concatenate(vals) if vals else np.zeros(0)


def stack_spearman(model: LevelClassifier, stacks) -> np.ndarray:
    """Per stack (S, H, W), lowest slice first: the Spearman correlation of the classifier's
    predicted level with the slice's place in the stack (1 = it rises all the way)."""
    return np.array([spearman(np.arange(len(s)), predict_levels(model, s)[1]) for s in stacks])


def band_scores(
    samples,
    sample_levels,
    train,
    test,
    test_levels,
    bands: int = 4,
    candidates: int = 0,
) -> list[dict]:
    """Per level band: the samples asked for in that band scored against the real test slices of
    that band (score_samples: realism ratio, diversity, copies, NN-SSIM against ``train``;
    ``candidates`` 0 searches every training slice)."""
    sb = level_band(np.asarray(sample_levels), bands)
    tb = level_band(np.asarray(test_levels), bands)
    samples, test = np.asarray(samples), np.asarray(test)
    out = []
    for b in range(bands):
        if not (sb == b).any() or (tb == b).sum() < 2:
            out.append({"band": b, "n_samples": int((sb == b).sum())})
            continue
        scores, _ = score_samples(samples[sb == b], train, test[tb == b], candidates=candidates)
        out.append({"band": b, "n_real": int((tb == b).sum()), **scores})
    return out
