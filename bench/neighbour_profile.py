"""Benchmark: how close are real held-out slices and samples to their 1st, 2nd, ... 40th nearest
training slices? Tells near-twins (neighbouring slices of the same brain) from the rest.

Usage: python bench/neighbour_profile.py [--run runs/priors-bench] [--data ../shared/data/brain-mri-128]
           [--kinds maskgit dcgan] [--n 100]

The realism ratio compares samples' NN-SSIM (SSIM to the single nearest training slice) with real
test slices'. This asks the same at every rank k: the mean of each slice's k-th highest SSIM
against the training split (searched exactly, no shortlist), for the real test and validation
slices and for n samples (seed 0) of each prior kind at its default temperature (decoded with the
run's tuned decoder where it holds one), and the ratio of the samples' to the test slices' at each
k. It also counts each slice's near-twins (brainvq.evaluation.realism.near_twins): training slices
whose SSIM to it exceeds its own plateau (the median of its 10th to 40th highest) by more than
0.05 / 0.1 (0.1 is what `brainvq evaluate` uses), and gives the SSIM to the nearest training
slice past them. A slice of a brain the training split holds other slices of has near-twins (that
brain's neighbouring slices); a slice of a new brain has none.
Appends the tables, with the machine, to bench/results/neighbour_profile.md and draws the
profiles in bench/results/neighbour_profile.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import (
    add_run_args,
    append_result,
    load_run_splits,
    markdown_table,
    result_block,
)

from brainvq.config import KIND_TEMPERATURE
from brainvq.evaluation.realism import NEIGHBOUR_DEPTH, as_images, near_twins
from brainvq.metrics import top_ssim_against
from brainvq.priors import load_prior
from brainvq.reporting.figures import neighbour_profile_figure
from brainvq.sampling import sample_images

RESULTS = Path(__file__).parent / "results" / "neighbour_profile.md"
FIGURE = RESULTS.with_suffix(".png")
RANKS = (1, 2, 3, 4, 5, 10, 20, 40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--kinds", nargs="+", default=["maskgit", "dcgan"])
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    loaded = load_run_splits(args)
    if loaded is None:
        return
    run, arrays = loaded
    train = as_images(arrays["train"])
    sets = {
        "real test": as_images(arrays["test"]),
        "real validation": as_images(arrays["validate"]),
    }
    for kind in args.kinds:
        drawn = sample_images(run, load_prior(run, kind), args.n, 0, 100, KIND_TEMPERATURE[kind])
        decoder = ", tuned decoder" if drawn["decoder"] == "tuned" else ""
        sets[f"{kind} T={drawn['temperature']:g}{decoder}"] = as_images(drawn["images"])
    tops = {}
    for name, images in sets.items():
        tops[name] = top_ssim_against(images, train, NEIGHBOUR_DEPTH)[0]
        print(name, "done", flush=True)
    test_mean = tops["real test"].mean(0)
    profile_rows, stand_rows = [], []
    for name, top in tops.items():
        mean = top.mean(0)
        profile_rows.append((name, len(top), *(f"{mean[k - 1]:.3f}" for k in RANKS)))
        if not name.startswith("real"):
            ratio = mean / test_mean
            profile_rows.append(("ratio to real test", "", *(f"{ratio[k - 1]:.3f}" for k in RANKS)))
        cells = []
        for delta in (0.05, 0.1):
            count, past = near_twins(top, delta)
            share = (count > 0).float().mean()
            cells += [f"{count.float().mean():.1f}", f"{share:.0%}", f"{past.mean():.3f}"]
        stand_rows.append((name, *cells))
    neighbour_profile_figure(
        {name: top.numpy() for name, top in tops.items()},
        FIGURE,
        "Nearest training slices: real held-out slices vs samples",
    )
    text = (
        f"\nData: {args.data}; run {args.run}; {args.n} samples per prior, seed 0; exact SSIM "
        f"against all {len(train)} training slices. Figure: bench/results/neighbour_profile.png.\n"
        f"`python bench/neighbour_profile.py --run {args.run} --kinds {' '.join(args.kinds)} "
        f"--n {args.n}`\n\nMean SSIM to the k-th nearest training slice:"
    )
    columns = ["set", "n", *(f"k={k}" for k in RANKS)]
    block = result_block("Nearest-neighbour profile", text, columns, profile_rows)
    block += (
        "\n\nNear-twins (training slices above a slice's own plateau, median of ranks 10-40):\n\n"
    )
    stand_cols = ["set"] + [
        f"{what} (+{d})"
        for d in (0.05, 0.1)
        for what in ("near-twins per slice", "slices with any", "SSIM past them")
    ]
    block += markdown_table(stand_cols, stand_rows)
    append_result(RESULTS, "Nearest-neighbour profiles of real slices and samples", block)


if __name__ == "__main__":
    main()
