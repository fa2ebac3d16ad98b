"""Samples a user can share: manifest.csv beside the PNGs, one row per sample.

Columns: ``file`` (the PNG beside it), ``prior``, ``seed`` and ``temperature`` it was drawn with,
``level`` (the axial level of its nearest training slice, where the training slices' names or the
embedded data tell it), ``nn_ssim`` (its SSIM with that nearest training slice) and ``copy`` (1 if
it is closer to a training slice than any real test slice comes: a recalled slice, not a new one).
The last three need the run's training and test slices; where those are not at hand they are left
empty and the summary says so once.

    from brainvq.evaluation.manifest import sample_with_manifest
    drawn = sample_with_manifest("runs/demo", n=16)     # or `brainvq sample --run runs/demo -n 16`
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from brainvq.data import discover, split_arrays
from brainvq.errors import BrainVQError
from brainvq.evaluation.keys import COPY_THRESHOLD
from brainvq.evaluation.realism import nn_ssim, real_reference
from brainvq.io import atomic_write_text
from brainvq.runs import Run, load_run
from brainvq.sampling import describe_samples, sample_run

MANIFEST = "manifest.csv"
COLUMNS = ("file", "prior", "seed", "temperature", "level", "nn_ssim", "copy")


def reference_cache(run: Run) -> Path:
    """Where the real test slices' nearest-neighbour search is kept between commands."""
    return run.dir.state / "evaluate"


def nearest_scores(run: Run, images: np.ndarray, data: str | None = None) -> dict | None:
    """Each image's NN-SSIM, the level of its nearest training slice (None where unknown) and
    whether it is a copy (above every real test slice's NN-SSIM); None where the run's data is
    not at hand."""
    cfg = run.config
    try:
        splits = discover(run.data_root(data), cfg.data)
        arrays = split_arrays(splits, cfg.data, progress=False)
    except BrainVQError:
        return None
    train, test = np.asarray(arrays["train"]), np.asarray(arrays["test"])
    if not len(train) or not len(test):
        return None
    ref = real_reference(train, test, cfg.eval.nn_candidates, reference_cache(run))[0]
    nn, where = nn_ssim(images, train, cfg.eval.nn_candidates)
    levels = splits.slice_levels("train")
    return {
        "nn_ssim": nn.numpy(),
        "level": [levels[i] for i in where.numpy()],
        "copy": (nn > ref[COPY_THRESHOLD]).numpy(),
    }


def condition_columns(drawn: dict) -> tuple[list[str], list[list]]:
    """The manifest's columns of a conditioned draw (none otherwise): ``guidance``, then
    ``asked_NAME`` per covariate asked for and ``measured_NAME`` per anatomy covariate measured
    on the samples; and their values per sample."""
    asked = drawn.get("conditions") or {}
    if not asked:
        return [], []
    n = len(drawn["images"])
    names = ["guidance", *(f"asked_{k}" for k in asked)]
    values = [[drawn["guidance"]] * n, *([v] * n for v in asked.values())]
    for k, v in drawn.get("measured", {}).items():
        names.append(f"measured_{k}")
        values.append([f"{x:.4f}" for x in v])
    return names, values


def write_manifest(folder: Path, drawn: dict, scores: dict | None, prefix: str = "sample") -> Path:
    """folder/manifest.csv for the samples of sample_run (``drawn``) written as PREFIX_NNNN.png,
    with the nearest_scores of their images (or None: those columns left empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra, values = condition_columns(drawn)
    w.writerow([*COLUMNS, *extra])
    for i in range(len(drawn["images"])):
        row = [f"{prefix}_{i:04d}.png", drawn["kind"], drawn["seed"], drawn["temperature"]]
        if scores is None:
            row += ["", "", ""]
        else:
            level = scores["level"][i]
            row += ["" if level is None else level, f"{scores['nn_ssim'][i]:.4f}"]
            row.append(int(scores["copy"][i]))
        w.writerow(row + [v[i] for v in values])
    path = Path(folder) / MANIFEST
    atomic_write_text(path, buf.getvalue())
    return path


def sample_with_manifest(
    run_path: str | Path, kind: str | None = None, data: str | None = None, **options
) -> dict:
    """What `brainvq sample` does: brainvq.sampling.sample_run(run_path, kind, **options) (the
    PNGs and grid.png), then manifest.csv beside them, its NN-SSIMs against the training slices of
    ``data`` (default: the run's). Returns sample_run's dict plus "manifest" (its path) and
    "scored" (False where the run's data was not at hand and the manifest's NN-SSIM, level and
    copy columns are empty). Whole stacks (``volumes``) are written as volumes and figures,
    without a manifest."""
    drawn = sample_run(run_path, kind, **options)
    if options.get("volumes"):
        return drawn
    scores = nearest_scores(load_run(run_path), drawn["images"], data)
    prefix = "variation" if options.get("like") else "sample"
    drawn["manifest"] = write_manifest(drawn["out"], drawn, scores, prefix)
    drawn["scored"] = scores is not None
    return drawn


def describe_manifest(drawn: dict) -> str:
    """What sample_with_manifest wrote: the samples (describe_samples), then the manifest."""
    if "manifest" not in drawn:
        return describe_samples(drawn)
    line = f"{describe_samples(drawn)}\nmanifest -> {drawn['manifest']}"
    if not drawn.get("scored", True):
        line += (
            " (NN-SSIM, level and copy columns left empty: the run's training data is not at "
            "hand; pass --data)"
        )
    elif "copies" in drawn:
        line += f" ({drawn['copies']} copies)"
    return line
