"""Bits per code of slices under a run's autoregressive prior: how typical each slice is.

A slice is encoded by the run's VQ-VAE into a code map, and the prior gives
``-log2 p(code map) / (h * w)``, its bits per code. Low means the prior finds the slice typical of
the slices it was trained on; high means unusual: another contrast or orientation, an artefact, a
lesion, a slice from the top or bottom of the head, or not a brain slice at all. The numbers are
only comparable under the same run (VQ-VAE and prior), so each slice is set beside the run's own
real test slices: a slice above their 99th percentile is marked unusual.
"""

from __future__ import annotations

import numpy as np
import torch

from brainvq.codes import code_maps, encode_images
from brainvq.data import read_named_slices
from brainvq.errors import DataError, RunError
from brainvq.priors import load_prior, pick_kind
from brainvq.runs import Run, load_run


def test_reference(run: Run, prior, data: str | None) -> np.ndarray | None:
    """Bits per code of the run's real test slices (from RUN/codes or encoded now); None if the
    data is not at hand."""
    try:
        codes = code_maps(run, run.data_root(data))["test"]
    except (RunError, DataError):
        return None
    if len(codes) == 0:
        return None
    return prior.bits_per_code(torch.from_numpy(codes)).numpy()


def score_files(run: Run, paths: list[str], kind: str, data: str | None = None) -> dict:
    """Bits per code of each slice file under the run's `kind` prior, with the test reference."""
    prior = load_prior(run, kind)
    files, images = read_named_slices(paths, run.config.data.image_size)
    codes = torch.from_numpy(encode_images(run, images, run.config.eval.batch_size))
    bits = prior.bits_per_code(codes).numpy()
    ref = test_reference(run, prior, data)
    result = {"kind": kind, "files": [str(f) for f in files], "bits_per_code": bits.tolist()}
    if ref is not None:
        p99 = float(np.percentile(ref, 99))
        result["test"] = {"mean": float(ref.mean()), "std": float(ref.std()), "p99": p99}
        result["unusual"] = [bool(b > p99) for b in bits]
    return result


def format_scores(result: dict) -> str:
    """One line per slice: bits per code, and 'unusual' against the test split when known."""
    width = max(len(f) for f in result["files"])
    lines = [f"{'slice':<{width}}  bits/code ({result['kind']} prior)"]
    for i, (f, b) in enumerate(zip(result["files"], result["bits_per_code"], strict=True)):
        flag = "  unusual" if result.get("unusual", [False] * (i + 1))[i] else ""
        lines.append(f"{f:<{width}}  {b:8.3f}{flag}")
    if "test" in result:
        t = result["test"]
        lines.append(
            f"real test slices: mean {t['mean']:.3f} +- {t['std']:.3f}, 99th percentile "
            f"{t['p99']:.3f} (higher = less typical of the training data)"
        )
    else:
        lines.append("(no test split at hand to compare with: pass --data)")
    return "\n".join(lines)


def score_run(run_path: str, paths: list[str], kind: str | None = None, data: str | None = None):
    """What `brainvq score` does: score_files under the run's likelihood prior (``kind``, else the
    transformer or pixelcnn it holds)."""
    run = load_run(run_path)
    return score_files(run, paths, pick_kind(run, kind, likelihood=True), data)
