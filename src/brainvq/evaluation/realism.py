"""How good are generated slices? Definitions shared by everyone (docs/measures.md).

- NN-SSIM of an image: its highest SSIM against the training split.
- realism ratio: mean NN-SSIM of samples / mean NN-SSIM of real test slices.
- diversity: mean pairwise SSIM among samples, beside the same among real test slices.
- copies: samples whose NN-SSIM exceeds the highest NN-SSIM any real test slice reaches.
- share in the real range: samples whose NN-SSIM is at least the lowest NN-SSIM a real test slice
  has, i.e. that are as close to some training slice as every real unseen slice is.
- code-histogram distance: total variation between the code frequencies of sampled and real maps.
- near-twins of a slice: training slices whose SSIM to it exceeds its own plateau (the median of
  its 10th to 40th highest SSIMs against the training split) by more than TWIN_MARGIN; a slice
  of a brain whose neighbouring slices are in the training split has them, a new brain's slice
  does not. The share of real test slices with near-twins checks splits whose file names carry
  no subject (`real_test_near_twin_share`); near_twins also gives each slice's SSIM to the
  nearest training slice past them (bench/neighbour_profile.py, bench/anchored_realism.py).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from brainvq.evaluation.keys import (
    COPIES,
    COPY_THRESHOLD,
    DIVERSITY_GAP,
    DIVERSITY_REAL,
    DIVERSITY_SAMPLES,
    N_SAMPLES,
    REALISM_RATIO,
)
from brainvq.io import atomic_write_bytes
from brainvq.metrics import (
    as_images,
    code_histogram,
    max_ssim_against,
    mean_pairwise_ssim,
    top_ssim_against,
)
from brainvq.progress import Progress


def _search(queries, what: str) -> Progress:
    """The progress of a nearest-neighbour search of the queries (``what``: "" = none shown)."""
    desc = f"nearest training slices of {what}"
    return Progress(len(queries), desc, "slice", enabled=bool(what))


def nn_ssim(
    queries, train, candidates: int = 0, progress: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's highest SSIM against the training images, and which training image
    (``progress``: show the search, naming the queries; "" = not shown)."""
    with _search(queries, progress) as bar:
        q, t = as_images(queries), as_images(train)
        return max_ssim_against(q, t, candidates=candidates, done=bar.update)


NEIGHBOUR_DEPTH = 40  # highest SSIMs kept per slice for the near-twin test
TWIN_MARGIN = 0.1  # how far above its plateau a training slice is a slice's near-twin


def neighbours(
    queries, train, candidates: int = 0, progress: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's NEIGHBOUR_DEPTH highest SSIMs against the training images (fewer if the
    training set is smaller), highest first, and which training images: both (M, k)
    (``progress`` as in nn_ssim)."""
    train = as_images(train)
    k = min(NEIGHBOUR_DEPTH, len(train))
    with _search(queries, progress) as bar:
        return top_ssim_against(
            as_images(queries), train, k, candidates=candidates, done=bar.update
        )


def near_twins(
    top: torch.Tensor, margin: float = TWIN_MARGIN
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """From neighbours' SSIMs (M, NEIGHBOUR_DEPTH): each slice's number of near-twins (more than
    ``margin`` above its plateau) and its SSIM to the nearest training slice past them; None when
    fewer were kept (a training set too small to show a plateau)."""
    if top.shape[1] < NEIGHBOUR_DEPTH:
        return None
    plateau = top[:, 9:].median(1).values
    count = (top > plateau[:, None] + margin).sum(1)
    past = top.gather(1, count.clamp_max(top.shape[1] - 1)[:, None])[:, 0]
    return count, past


def histogram_distance(codes_a, codes_b, codebook_size: int) -> float:
    """Total-variation distance (0 = same code frequencies, 1 = disjoint) of two code-map sets."""
    a = code_histogram(torch.as_tensor(np.asarray(codes_a)), codebook_size).double()
    b = code_histogram(torch.as_tensor(np.asarray(codes_b)), codebook_size).double()
    return float(0.5 * (a / a.sum() - b / b.sum()).abs().sum())


def realism_ratio(
    images, test, train, candidates: int = 128, cache_dir=None, progress: bool = False
) -> float:
    """Mean NN-SSIM of images / mean NN-SSIM of the real test slices (1: as close to the
    training slices as unseen real ones). Of a VQ-VAE's test reconstructions, it is what samples
    as good as real code maps would score through that decoder."""
    real = real_reference(train, test, candidates, cache_dir, progress)[0]
    shown = "the reconstructions" if progress else ""
    return (
        float(nn_ssim(images, train, candidates, shown)[0].mean()) / real["real_test_nn_ssim_mean"]
    )


def _fingerprint(x) -> str:
    """A digest of an image set's values, shape and type (to reuse work done on the same set)."""
    a = np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
    h = hashlib.blake2b(memoryview(a).cast("B"), digest_size=16)
    h.update(f"{a.shape}{a.dtype}".encode())
    return h.hexdigest()


# The real side costs a nearest-neighbour search of every test slice (minutes on full OASIS) and is
# the same for the VQ-VAE's section and every prior `evaluate` scores: computed once per process,
# and kept on disk where the caller names a folder (`evaluate`: RUN/state/evaluate/).
_REAL_CACHE: dict[str, tuple[dict, dict]] = {}
_REAL_VERSION = 3  # bump when what real_reference returns changes


def _load_real(path: Path) -> tuple[dict, dict] | None:
    """A real reference saved by _save_real, or None if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stats = json.loads(str(z["stats"]))
            per = {k: z[k] for k in z.files if k != "stats"}
    except (OSError, ValueError, KeyError):
        return None
    return stats, per


def _save_real(path: Path, stats: dict, per: dict) -> None:
    """Save a real reference (atomically), removing the folder's older ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob("real-*.npz"):
        old.unlink(missing_ok=True)
    buf = io.BytesIO()
    np.savez(buf, stats=np.array(json.dumps(stats)), **per)
    atomic_write_bytes(path, buf.getvalue())


def real_reference(
    train, test, candidates: int = 128, cache_dir: Path | str | None = None, progress: bool = False
) -> tuple[dict, dict]:
    """The real side of the sample measures: test slices' NN-SSIM, diversity and copy line, and
    per test slice its NN-SSIM and nearest training slice (`nn_ssim`, `nearest`). The same sets
    give the same answer without a second search in this process, and in later ones where
    ``cache_dir`` holds it (copies: the caller may change them)."""
    parts = (_REAL_VERSION, candidates, NEIGHBOUR_DEPTH, TWIN_MARGIN)
    key = hashlib.blake2b(
        f"{parts}{_fingerprint(train)}{_fingerprint(test)}".encode(), digest_size=16
    ).hexdigest()
    path = Path(cache_dir) / f"real-{key}.npz" if cache_dir is not None else None
    if key not in _REAL_CACHE and path is not None and path.exists():
        loaded = _load_real(path)
        if loaded is not None:
            _REAL_CACHE.clear()
            _REAL_CACHE[key] = loaded
    if key in _REAL_CACHE:
        stats, per = _REAL_CACHE[key]
        if path is not None and not path.exists():
            _save_real(path, stats, per)
        return dict(stats), {k: v.copy() for k, v in per.items()}
    top, where = neighbours(test, train, candidates, "the real test slices" if progress else "")
    t_nn, t_idx = top[:, 0], where[:, 0]
    stats = {
        "real_test_nn_ssim_mean": float(t_nn.mean()),
        "real_test_nn_ssim_min": float(t_nn.min()),
        DIVERSITY_REAL: mean_pairwise_ssim(test),
        COPY_THRESHOLD: float(t_nn.max()),
    }
    per = {"nn_ssim": t_nn.numpy(), "nearest": t_idx.numpy(), "neighbours": top.numpy()}
    twins = near_twins(top)
    if twins is not None:
        stats["real_test_near_twin_share"] = float((twins[0] > 0).float().mean())
        per["near_twins"] = twins[0].numpy()
    _REAL_CACHE.clear()  # one entry: the data `evaluate` is scoring
    _REAL_CACHE[key] = (stats, per)
    if path is not None:
        _save_real(path, stats, per)
    return dict(stats), {k: v.copy() for k, v in per.items()}


def reference_stats(train, test, candidates: int = 128) -> dict:
    """real_reference's summary alone (kept by benchmarks that score many sample sets)."""
    return real_reference(train, test, candidates)[0]


def score_samples(
    samples,
    train,
    test,
    sample_codes=None,
    real_codes=None,
    codebook_size=0,
    candidates=128,
    reference: dict | None = None,
    cache_dir=None,
    progress: bool = False,
):
    """Every sample measure at once; returns a dict of floats plus per-sample arrays
    (`nn_ssim`, `nearest`, `neighbours`: the highest SSIMs, see neighbours(); and the same with
    `real_` for the test slices, with `real_near_twins`, unless `reference` is given).

    `reference` (from reference_stats) skips recomputing the real side when scoring many sets;
    `cache_dir` keeps the real side on disk for later processes (see real_reference);
    `progress` shows the nearest-neighbour searches.
    """
    real_per = {}
    if reference is None:
        ref, real_per = real_reference(train, test, candidates, cache_dir, progress)
    else:
        ref = reference
    top, where = neighbours(samples, train, candidates, "the samples" if progress else "")
    s_nn, s_idx = top[:, 0], where[:, 0]
    out = {
        N_SAMPLES: int(s_nn.numel()),
        "nn_ssim_mean": float(s_nn.mean()),
        "nn_ssim_max": float(s_nn.max()),
        "nn_ssim_min": float(s_nn.min()),
        "share_over_0.6": float((s_nn > 0.6).float().mean()),
        **ref,
        REALISM_RATIO: float(s_nn.mean()) / ref["real_test_nn_ssim_mean"],
        DIVERSITY_SAMPLES: mean_pairwise_ssim(samples),
        COPIES: int((s_nn > ref[COPY_THRESHOLD]).sum()),
    }
    out[DIVERSITY_GAP] = out[DIVERSITY_SAMPLES] - out[DIVERSITY_REAL]
    if "real_test_nn_ssim_min" in ref:  # (absent from references cached by older versions)
        out["share_in_real_range"] = float((s_nn >= ref["real_test_nn_ssim_min"]).float().mean())
    if sample_codes is not None and real_codes is not None and codebook_size:
        out["code_hist_distance"] = histogram_distance(sample_codes, real_codes, codebook_size)
        out["sample_codes_used"] = int(np.unique(np.asarray(sample_codes)).size)
    per_sample = {"nn_ssim": s_nn.numpy(), "nearest": s_idx.numpy(), "neighbours": top.numpy()}
    per_sample.update({f"real_{k}": v for k, v in real_per.items()})
    return out, per_sample


NEAR_TWIN_WARNING = 0.5  # warn when more real test slices than this have near-twins in training
NEAR_TWIN_MEANS = (
    "a near-twin is a training slice far closer to a test slice than the rest, as a "
    "neighbouring slice of the same brain is"
)


def near_twin_warning(data: dict) -> str | None:
    """The warning a high share of real test slices with near-twins deserves, or None."""
    share = data.get("real_test_near_twin_share")
    if share is None or share <= NEAR_TWIN_WARNING or data.get("one_brain"):
        return None
    return (
        f"{share:.0%} of the real test slices have a near-twin in the training split "
        f"({NEAR_TWIN_MEANS}): the splits likely share brains and held-out scores read too high; "
        "keep each subject in one split (data.subject_pattern names the subjects)"
    )
