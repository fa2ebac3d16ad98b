"""Benchmark: where the realism ratio's gap lies, for the priors a run already holds.

Usage: python bench/realism_gap.py [--run runs/priors-bench] [--data ../shared/data/brain-mri-128]
           [--kinds maskgit dcgan] [--n 300] [--temperature T]

For each KIND, draws n samples (seed 0; at the kind's default temperature, brainvq.config's
KIND_TEMPERATURE, unless --temperature; decoded with the run's tuned decoder where it holds one)
and asks three questions of the samples' NN-SSIM (highest SSIM against the training split) beside
the real test slices':
- how it is spread: quantiles of both, and how many of the real test slices have a training slice
  of SSIM >= 0.9 (a near-twin), 0.8-0.9, or below 0.8;
- could picking samples reach realism 1: the realism ratio of the best third of the samples,
  chosen by their NN-SSIM itself (an oracle no sampler has; an upper bound for any filter that
  keeps one sample in three);
- at which scale the gap is: the ratio again with samples, test and training slices averaged down
  2x and 4x (coarse anatomy only).
Appends the table, with the machine, to bench/results/realism_gap.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from brainvq.config import KIND_TEMPERATURE
from brainvq.evaluation.realism import as_images, nn_ssim, score_samples
from brainvq.priors import load_prior
from brainvq.sampling import sample_images

sys.path.insert(0, str(Path(__file__).parent))
from common import add_run_args, append_result, load_run_splits, result_block  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "realism_gap.md"
COLUMNS = [
    "set",
    "n",
    "NN-SSIM q10 / median / q90 / max",
    "realism ratio",
    "best third (oracle)",
    "ratio at 1/2 size",
    "ratio at 1/4 size",
]


def pooled_mean_nn(images, train, factor: int, candidates: int) -> float:
    """Mean NN-SSIM with queries and training slices averaged down by factor."""
    q = F.avg_pool2d(as_images(images), factor)
    t = F.avg_pool2d(as_images(train), factor)
    return float(nn_ssim(q, t, candidates)[0].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--kinds", nargs="+", default=["maskgit", "dcgan"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--candidates", type=int, default=128, help="NN-SSIM shortlist (0: all)")
    args = ap.parse_args()
    loaded = load_run_splits(args)
    if loaded is None:
        return
    run, arrays = loaded
    train, test = np.asarray(arrays["train"]), np.asarray(arrays["test"])
    real_pooled = {f: pooled_mean_nn(test, train, f, args.candidates) for f in (2, 4)}
    rows, real = [], None
    for kind in args.kinds:
        prior = load_prior(run, kind)
        temperature = args.temperature or KIND_TEMPERATURE[kind]
        drawn = sample_images(run, prior, args.n, 0, 100, temperature, None)
        s, per = score_samples(drawn["images"], train, test, candidates=args.candidates)
        real = per["real_nn_ssim"]
        nn = np.sort(per["nn_ssim"])[::-1]
        ref = s["real_test_nn_ssim_mean"]
        label = f"{kind} T={drawn['temperature']:g}" + (
            ", tuned decoder" if drawn["decoder"] == "tuned" else ""
        )
        pooled = {f: pooled_mean_nn(drawn["images"], train, f, args.candidates) for f in (2, 4)}
        q = np.quantile(nn, [0.1, 0.5, 0.9])
        rows.append(
            (
                label,
                args.n,
                f"{q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} / {nn[0]:.3f}",
                f"{s['realism_ratio']:.3f}",
                f"{nn[: max(1, args.n // 3)].mean() / ref:.3f}",
                f"{pooled[2] / real_pooled[2]:.3f}",
                f"{pooled[4] / real_pooled[4]:.3f}",
            )
        )
        print(rows[-1], flush=True)
    q = np.quantile(real, [0.1, 0.5, 0.9])
    rows.append(
        (
            "real test slices",
            len(real),
            f"{q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} / {real.max():.3f}",
            "1",
            "",
            f"mean NN-SSIM {real_pooled[2]:.3f}",
            f"mean NN-SSIM {real_pooled[4]:.3f}",
        )
    )
    twins = [(real >= 0.9).mean(), ((real >= 0.8) & (real < 0.9)).mean(), (real < 0.8).mean()]
    text = (
        f"\nData: {args.data}; run {args.run}; {args.n} samples per prior, seed 0; NN-SSIM "
        f"shortlist {args.candidates}. Real test slices whose nearest training slice has SSIM "
        f">= 0.9: {twins[0]:.0%}, 0.8-0.9: {twins[1]:.0%}, < 0.8: {twins[2]:.0%} (lowest "
        f"{real.min():.3f}, mean {real.mean():.3f}).\n"
        f"`python bench/realism_gap.py --run {args.run} --kinds {' '.join(args.kinds)} --n {args.n}`"
    )
    block = result_block(f"Realism gap of {', '.join(args.kinds)}", text, COLUMNS, rows)
    append_result(RESULTS, "Where the realism ratio's gap lies", block)


if __name__ == "__main__":
    main()
