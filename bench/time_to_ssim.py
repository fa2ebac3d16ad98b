"""Benchmark: wall-clock training time of the default VQ-VAE to reach a test SSIM (default 0.90).

Usage: python bench/time_to_ssim.py [DATA] [--target 0.90] [--steps 0.5 1 1.5 2 3 4]
           [--run runs/bench-time-to-ssim]

Trains `brainvq train-vqvae` (default config, 128x128) with a growing wall-clock budget: the
first budget from scratch, each later one resuming the same run (the budget is cumulative: the
time already spent is carried in the checkpoint), and scores the test split (skimage SSIM) with
`brainvq evaluate` after each. Stops at the first budget whose test SSIM reaches the target; the
table, with the machine, is appended to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import DEFAULT_DATA, append_result, data_missing, result_block

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA)
    ap.add_argument("--target", type=float, default=0.90)
    ap.add_argument("--steps", type=float, nargs="+", default=[0.5, 1, 1.5, 2, 3, 4])
    ap.add_argument("--run", default="runs/bench-time-to-ssim")
    args = ap.parse_args()
    if data_missing(args.data):
        return 0
    cli = [sys.executable, "-m", "brainvq.cli"]
    rows, reached = [], None
    for i, minutes in enumerate(args.steps):
        train = [*cli, "train-vqvae", "--data", args.data, "--run", args.run, "--quiet"]
        train += ["--data.image_size", "128", "--max-minutes", str(minutes)]
        if i == 0:
            train.append("--fresh")
        subprocess.run(train, check=True, capture_output=True, text=True)
        subprocess.run([*cli, "evaluate", "--run", args.run], check=True, capture_output=True)
        m = json.loads((Path(args.run) / "metrics.json").read_text())["vqvae"]
        ssim = m["ssim"]["mean"]
        rows.append((f"{minutes:g}", f"{ssim:.4f}", m["codes_used"]))
        print(rows[-1], flush=True)
        if ssim >= args.target:
            reached = minutes
            break
        (Path(args.run) / "vqvae.safetensors").unlink()  # so the next call resumes training
    verdict = (
        f"test SSIM {args.target:g} reached within **{reached:g} minutes** of training"
        if reached is not None
        else f"test SSIM {args.target:g} not reached within {args.steps[-1]:g} minutes"
    )
    block = result_block(
        f"Time to test SSIM {args.target:g}",
        f"Data: {args.data} at 128x128, default config; {verdict} "
        f"(`python bench/time_to_ssim.py {args.data}`).",
        ["training budget (min, cumulative)", "test SSIM", "codes used"],
        rows,
    )
    append_result(DOCS, "brainvq benchmarks", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
