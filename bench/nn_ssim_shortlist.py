"""Check the NN-SSIM shortlist: exhaustive search vs the nearest-128-in-L2 shortlist, on real slices.

Usage: python bench/nn_ssim_shortlist.py [DATA] [--candidates 128]
Scores every test slice against the training split both ways and appends the agreement and the
timings, with the machine, to bench/results/nn_ssim_shortlist.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import DEFAULT_DATA, append_result, data_missing, machine

from brainvq.config import DataConfig
from brainvq.data import load_splits
from brainvq.metrics import max_ssim_against


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA)
    ap.add_argument("--candidates", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=128)
    args = ap.parse_args()
    if data_missing(args.data):
        return 0
    z = load_splits(args.data, DataConfig(image_size=args.image_size), progress=False)
    train = torch.from_numpy(np.array(z["train"])).float()[:, None] / 255
    test = torch.from_numpy(np.array(z["test"])).float()[:, None] / 255
    t = time.perf_counter()
    full, wf = max_ssim_against(test, train)
    tf = time.perf_counter() - t
    t = time.perf_counter()
    short, ws = max_ssim_against(test, train, candidates=args.candidates)
    ts = time.perf_counter() - t
    block = (
        f"\n## {args.data}: {len(test)} test slices vs {len(train)} training slices\n\n"
        f"- machine: {machine()}\n"
        f"- exhaustive {tf:.1f} s, shortlist of {args.candidates} {ts:.1f} s (same process)\n"
        f"- same nearest slice for {(wf == ws).float().mean():.1%} of test slices; largest NN-SSIM "
        f"difference {(full - short).abs().max():.2e}; mean NN-SSIM {full.mean():.4f} exhaustive, "
        f"{short.mean():.4f} shortlist\n"
    )
    append_result(
        Path(__file__).parent / "results" / "nn_ssim_shortlist.md",
        "NN-SSIM: exhaustive search vs L2 shortlist",
        block,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
