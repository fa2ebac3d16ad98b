"""Benchmark: test reconstruction SSIM of the default config after a wall-clock training budget.

Usage: python bench/vqvae_budget.py [DATA] [--minutes 15] [--run runs/bench-vqvae]
Defaults to ../shared/data/brain-mri-128 at 128x128 and 15 minutes; appends a result block with the
machine it ran on to bench/results/vqvae_budget.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import DEFAULT_DATA, append_result, data_missing, result_block

from brainvq.training.hardware import resolve_precision

RESULTS = Path(__file__).parent / "results" / "vqvae_budget.md"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--run", default="runs/bench-vqvae")
    args = ap.parse_args()
    if data_missing(args.data):
        return 0
    base = [sys.executable, "-m", "brainvq.cli"]
    train = base + [
        "train-vqvae",
        "--data",
        args.data,
        "--run",
        args.run,
        "--fresh",
        "--quiet",
        "--max-minutes",
        str(args.minutes),
        "--data.image_size",
        str(args.image_size),
    ]
    t0 = time.time()
    subprocess.run(train, check=True)
    wall = time.time() - t0
    subprocess.run(base + ["evaluate", "--run", args.run], check=True)
    m = json.loads((Path(args.run) / "metrics.json").read_text())["vqvae"]
    precision = resolve_precision("auto", "gpu" if torch.cuda.is_available() else "cpu")
    text = (
        f"Precision {precision}\n\n"
        f"- command: `{' '.join(train[2:])}` then `brainvq evaluate --run {args.run}`\n"
        f"- train command wall time: {wall / 60:.1f} min (budget {args.minutes:g} min of training)\n"
        f"- test SSIM (skimage) mean {m['ssim']['mean']:.4f}, std {m['ssim']['std']:.4f}, "
        f"min {m['ssim']['min']:.4f}, max {m['ssim']['max']:.4f}; PSNR {m['psnr']['mean']:.2f} dB\n"
        f"- codebook: {m['codes_used']}/{m['codes_used'] / m['codebook_usage']:.0f} codes used "
        f"on the test split ({m['codebook_usage']:.1%}), perplexity {m['perplexity']:.1f}"
    )
    heading = f"{args.minutes:g}-minute budget, {args.data} at {args.image_size}x{args.image_size}"
    block = result_block(heading, text)
    append_result(RESULTS, "VQ-VAE under a wall-clock budget", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
