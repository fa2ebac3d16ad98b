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
from pathlib import Path

import numpy as np
import torch

from brainvq.codes import code_maps
from brainvq.data import atomic_save_npy, discover
from brainvq.errors import DataError
from brainvq.evaluation.figures import rows_figure
from brainvq.evaluation.two_sample import c2st_folds, pooled_c2st
from brainvq.evaluation.verdict import close_limit, prior_test_close
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
    pools: Sequence[int] = PRIOR_POOLS,
    folds: int = 5,
    seed: int = 0,
    data: str | None = None,
    progress: bool = False,
) -> dict:
    """The prior test's reference: reconstructions of the validation brains against those of the
    test brains (same decoder as ``kind``'s samples), folds by brain on both sides, at most ``n``
    a side; cached in RUN/state/evaluate/prior_c2st_reference.json per decoder and setting."""
    _, decoder, stamp = decoder_for(run, kind)
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
    ref = reference_c2st(run, kind, n, pools, folds, seed, data, progress) if n else None
    return {"prior_c2st": test, "prior_c2st_reference": ref or {"skipped": "no prior test"}}


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


def prior_test_rows(s: dict) -> list[tuple[str, str]]:
    """Table rows of a samples section's prior test: accuracy +- spread beside its reference at
    each pool, or why it was skipped ([] where it did not run)."""
    test, ref = s.get("prior_c2st"), s.get("prior_c2st_reference") or {}
    if not test:
        return []
    if "skipped" in test:
        return [("prior test", f"skipped ({test['skipped']})")]
    rows = []
    for pool in test["pools"]:
        mine = f"{test[f'pool{pool}']:.2f} +- {test[f'pool{pool}_std']:.2f}"
        if f"pool{pool}" in ref:
            mine += f" (reference {ref[f'pool{pool}']:.2f} +- {ref[f'pool{pool}_std']:.2f})"
        rows.append((f"prior test pool {pool}", mine))
    folds = len(test[f"pool{test['pools'][0]}_folds"])
    rows.append(("prior test folds", f"{folds}, {test['n_per_side']} a side, {test['folds_by']}"))
    return rows


def prior_test_words(s: dict) -> str:
    """The plain-words line on the prior test ('' where it did not run)."""
    test, ref = s.get("prior_c2st"), s.get("prior_c2st_reference")
    close = prior_test_close(test, ref)
    if close is None:
        return ""
    pool = max(p for p in test["pools"] if f"pool{p}" in ref)
    said = "close to it" if close else f"not close (close: at most {close_limit(ref, pool):.2f})"
    return (
        f"\nPrior test: a small CNN tells these samples from the decoder's reconstructions of "
        f"real {test['reference']} slices {test[f'pool{pool}']:.0%} of the time at pool {pool}, "
        f"two sets of real brains {ref[f'pool{pool}']:.0%}: {said}. The C2ST against raw real "
        "slices is bounded by the decoder's texture"
    )
