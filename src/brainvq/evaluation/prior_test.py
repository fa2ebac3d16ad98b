"""The prior's two-sample test: can a classifier tell a prior's decoded samples from the VQ-VAE's
reconstructions of real brains?

Samples and reconstructions come out of the same decoder (the one tuned to the prior where the
run holds one, as brainvq.sampling decodes), so only the code maps differ: the test judges the
prior alone. The C2ST against raw real slices (brainvq.evaluation.two_sample) cannot: it is
bounded by the decoder's texture, and reconstructions of real slices score as high there as
samples do.

The classifier is brainvq.evaluation.c2st.c2st, unchanged. The reference split's reconstructions
keep their brains whole in one fold; samples, which have no brain, are dealt to folds at random.
It is run at PRIOR_POOLS (full resolution, 2x2- and 4x4-averaged: pool 4 asks about anatomy at
the scale of the code grid and above, past the finest texture).

Its reference is what a prior that draws real code maps scores: reconstructions of the
validation brains against reconstructions of the test brains (folds by brain on both sides), at
the same pools and the same number of images a side. It does not depend on the prior, so it is
computed once per decoder and cached in RUN/state/evaluate/ (with the reconstructions).

    from brainvq.evaluation.prior_test import prior_two_sample
    out = prior_two_sample(run, drawn["images"], "maskgit", reference="validate")
    out["prior_c2st"]["pool4"], out["prior_c2st_reference"]["pool4"]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainvq.codes import code_maps
from brainvq.data import atomic_save_npy, discover
from brainvq.errors import DataError
from brainvq.evaluation.keys import PRIOR_C2ST, PRIOR_C2ST_REFERENCE
from brainvq.evaluation.two_sample import c2st_folds, pooled_c2st
from brainvq.io import atomic_write_text, file_digest
from brainvq.nn.vqvae import VQVAE
from brainvq.priors.tuned_decoder import decoder_path, tuned_vqvae
from brainvq.runs import Run

PRIOR_POOLS = (1, 2, 4)
LABEL = "prior two-sample test"
PRIOR_C2ST_MEANS = (
    "0.5 = a classifier cannot tell the samples from reconstructions of real brains (same "
    "decoder), 1.0 = it always can; read it beside the reference"
)
REFERENCE_MEANS = (
    "reconstructions of the validation brains against those of the test brains: what a prior "
    "that draws real code maps scores"
)
REFERENCE_SPLITS = ("validate", "test")


@dataclass(frozen=True)
class PriorTestSetup:
    """How the prior test and its reference run: pools, folds and the classifier's seed."""

    pools: tuple[int, ...] = PRIOR_POOLS
    folds: int = 5
    seed: int = 0


def cache_dir(run: Run) -> Path:
    """RUN/state/evaluate/: reconstructions and the reference, which do not depend on a prior."""
    return run.dir.state / "evaluate"


def decoder_for(run: Run, kind: str | None) -> tuple[VQVAE, str, str]:
    """(the decoder sampling uses for ``kind``, "tuned" or "vqvae", a stamp of its weights): the
    decoder tuned to that prior where the run holds a current one (brainvq.sampling), else the
    VQ-VAE's own."""
    tuned = tuned_vqvae(run, kind) if kind else None
    if tuned is None:
        return run.vqvae, "vqvae", "vqvae-" + file_digest(run.dir.vqvae)[:16]
    path = decoder_path(run.dir, kind)
    return tuned, "tuned", f"tuned-{kind}-" + file_digest(path)[:16]


def data_tag(run: Run, data: str | None = None) -> str:
    """A short tag of the data folder the run is scored on (cached files name it)."""
    root = str(Path(run.data_root(data)).expanduser().resolve())
    return hashlib.blake2b(root.encode(), digest_size=4).hexdigest()


@torch.no_grad()
def reconstructions(
    run: Run, split: str, kind: str | None = None, data: str | None = None, progress: bool = False
) -> np.ndarray:
    """The split's real slices as the run's code maps (RUN/codes/) decoded by ``kind``'s decoder:
    (N, S, S) float32 in [0, 1], cached in RUN/state/evaluate/."""
    vq, _, stamp = decoder_for(run, kind)
    path = cache_dir(run) / f"recons-{stamp}-{data_tag(run, data)}-{split}.npy"
    codes = code_maps(run, run.data_root(data), progress=progress)[split]
    if path.exists() and path.stat().st_mtime_ns >= run.dir.vqvae.stat().st_mtime_ns:
        cached = np.load(path)
        if len(cached) == len(codes):
            return cached
    if len(codes) == 0:
        return np.zeros((0, run.config.data.image_size, run.config.data.image_size), np.float32)
    bs = run.config.eval.batch_size
    images = vq.decode(torch.from_numpy(codes), bs)[:, 0].clamp(0, 1).numpy().astype(np.float32)
    atomic_save_npy(path, images)
    return images


def reference_c2st(
    run: Run,
    kind: str | None = None,
    n: int | None = None,
    setup: PriorTestSetup = PriorTestSetup(),
    data: str | None = None,
    progress: bool = False,
) -> dict:
    """The prior test's reference: reconstructions of the validation brains against those of the
    test brains (same decoder as ``kind``'s samples), folds by brain on both sides, at most ``n``
    a side; cached in RUN/state/evaluate/prior_c2st_reference.json per decoder and setting."""
    _, decoder, stamp = decoder_for(run, kind)
    pools, folds, seed = setup.pools, setup.folds, setup.seed
    key = f"{stamp}|{data_tag(run, data)}|n={n}|folds={folds}|seed={seed}|pools="
    key += ",".join(map(str, pools))
    path = cache_dir(run) / "prior_c2st_reference.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached and cached[key].get("vqvae_mtime_ns") == run.dir.vqvae.stat().st_mtime_ns:
        return cached[key]["result"]
    splits = discover(run.data_root(data), run.config.data)
    val, test = (reconstructions(run, s, kind, data, progress) for s in ("validate", "test"))
    g_val, note_val = c2st_folds(splits, "validate")
    g_test, note_test = c2st_folds(splits, "test")
    out = pooled_c2st(val, test, pools, folds, seed, g_val, g_test, n, progress, LABEL)
    out.update(reading=REFERENCE_MEANS, decoder=decoder)
    out["folds_by"] = f"validate: {note_val}; test: {note_test}"
    cached[key] = {"vqvae_mtime_ns": run.dir.vqvae.stat().st_mtime_ns, "result": out}
    atomic_write_text(path, json.dumps(cached, indent=1))
    return out


def prior_two_sample(
    run: Run,
    samples_images: np.ndarray,
    kind: str | None = None,
    reference: str = "validate",
    *,
    pools: Sequence[int] = PRIOR_POOLS,
    folds: int = 5,
    seed: int = 0,
    data: str | None = None,
    progress: bool = False,
) -> dict:
    """The prior's two-sample test and its reference: {"prior_c2st": c2st of the samples (N, S, S)
    in [0, 1] against the reconstructions of the ``reference`` split's real slices (folds by
    brain), "prior_c2st_reference": reconstructions of validation vs test brains}, each
    {"pool{p}": accuracy, "pool{p}_std", "pool{p}_folds", "n_per_side", ...} or {"skipped": why}.

    ``kind``: the prior that drew the samples, whose decoder (tuned or the VQ-VAE's) decodes the
    reconstructions too; None: the VQ-VAE's."""
    if reference not in REFERENCE_SPLITS:
        raise DataError(f"prior test: reference {reference!r}; use 'validate' or 'test'")
    samples = np.asarray(samples_images, dtype=np.float32)
    recons = reconstructions(run, reference, kind, data, progress)
    splits = discover(run.data_root(data), run.config.data)
    groups, note = c2st_folds(splits, reference)
    _, decoder, _ = decoder_for(run, kind)
    test = pooled_c2st(
        recons, samples, pools, folds, seed, groups, None, progress=progress, label=LABEL
    )
    test.update(reading=PRIOR_C2ST_MEANS, reference=reference, decoder=decoder, folds_by=note)
    n = test.get("n_per_side")
    setup = PriorTestSetup(tuple(pools), folds, seed)
    ref = reference_c2st(run, kind, n, setup, data, progress) if n else None
    return {PRIOR_C2ST: test, PRIOR_C2ST_REFERENCE: ref or {"skipped": "no prior test"}}
