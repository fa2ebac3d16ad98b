"""Benchmark: how near to a training slice must samples be to reach the realism target?

Usage: python bench/anchored_realism.py [--run runs/priors-bench] [--data ../shared/data/brain-mri-128]
           [--n 100] [--shares 0.25 0.5 0.6 0.7 0.8 0.9 1.0] [--temperature T]

Draws n variations of training slices with the run's maskgit prior (Prior.vary: each of n
training code maps, drawn at random with seed 0, gets a share of its codes hidden at random and
drawn anew given the rest, at the kind's default temperature unless --temperature; decoded with the
run's tuned decoder where it holds one) and scores them like samples (brainvq.evaluation.realism):
NN-SSIM, realism ratio, diversity beside the real test slices', copies; plus the share of codes
that actually changed and how often a variation's nearest training slice is the slice it was made
from, and the realism ratio past near-twins (each side's mean SSIM to its nearest training slice
that is not a near-twin, brainvq.evaluation.realism.near_twins), to see how far edits of training
slices move that diagnostic. Share 1 hides every code: plain sampling, no anchor. The table
shows what a realism ratio of 0.95 asks for on this data: samples as near a training slice as
these edits are.
Appends the table, with the machine, to bench/results/anchored_realism.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from brainvq.codes import code_maps
from brainvq.config import KIND_TEMPERATURE
from brainvq.evaluation.realism import near_twins, real_reference, score_samples
from brainvq.priors import load_prior
from brainvq.sampling import vary_images

sys.path.insert(0, str(Path(__file__).parent))
from common import add_run_args, append_result, load_run_splits, result_block  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "anchored_realism.md"
COLUMNS = [
    "share hidden",
    "codes changed",
    "NN-SSIM mean",
    "realism ratio",
    "diversity (real)",
    "copies",
    "nearest is its own slice",
    "realism past near-twins",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--shares", nargs="+", type=float, default=[0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1])
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--candidates", type=int, default=128, help="NN-SSIM shortlist (0: all)")
    args = ap.parse_args()
    loaded = load_run_splits(args)
    if loaded is None:
        return
    run, arrays = loaded
    prior = load_prior(run, "maskgit")
    train, test = np.asarray(arrays["train"]), np.asarray(arrays["test"])
    maps = code_maps(run, args.data)
    ref, real_per = real_reference(train, test, args.candidates)
    real_past = float(near_twins(torch.from_numpy(real_per["neighbours"]))[1].mean())
    pick = np.random.default_rng(0).choice(len(maps["train"]), args.n, replace=False)
    anchors = torch.from_numpy(maps["train"][pick]).long()
    temperature = args.temperature or KIND_TEMPERATURE["maskgit"]
    rows, decoder = [], ""
    for share in args.shares:
        drawn = vary_images(run, prior, anchors, args.n, share, 0, 100, temperature, None)
        decoder = drawn["decoder"]
        s, per = score_samples(
            drawn["images"], train, test, candidates=args.candidates, reference=ref
        )
        changed = (drawn["codes"] != anchors).float().mean().item()
        rows.append(
            (
                f"{share:g}",
                f"{changed:.1%}",
                f"{s['nn_ssim_mean']:.3f}",
                f"{s['realism_ratio']:.3f}",
                f"{s['diversity_samples']:.3f} ({s['diversity_real_test']:.3f})",
                s["copies"],
                f"{(per['nearest'] == pick).mean():.0%}",
                f"{near_twins(torch.from_numpy(per['neighbours']))[1].mean() / real_past:.3f}",
            )
        )
        print(rows[-1], flush=True)
    text = (
        f"\nData: {args.data}; run {args.run}; maskgit prior, T={temperature:g}, {decoder} "
        f"decoder; {args.n} training slices picked at random (seed 0), one variation each (seed "
        f"0); NN-SSIM shortlist {args.candidates}. Real test slices: mean NN-SSIM "
        f"{ref['real_test_nn_ssim_mean']:.3f}, copy threshold {ref['copy_threshold']:.3f}.\n"
        f"`python bench/anchored_realism.py --run {args.run} --n {args.n} --shares "
        f"{' '.join(f'{x:g}' for x in args.shares)}`"
    )
    block = result_block("Variations of training slices (maskgit)", text, COLUMNS, rows)
    append_result(RESULTS, "How near a training slice the realism target asks samples to be", block)


if __name__ == "__main__":
    main()
