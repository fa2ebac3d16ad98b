"""Benchmark: peak resident memory of `brainvq train-vqvae` on a full-OASIS-size set.

Usage: python bench/peak_memory.py [--n 9664] [--size 256] [--minutes 2] [--keep DIR]

Writes N generated 256x256 brain-like slices (ellipses with noise, as the tests make them) as PNGs
in the keras layout (85/10/5 split), then runs `brainvq train-vqvae` on them in a child process
for a short budget (decode cache build, then training) and reads the child's peak resident set
size (ru_maxrss). The result, with the machine, is appended to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import append_result, result_block
from PIL import Image

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import fake_slice  # noqa: E402


def write_set(root: Path, n: int, size: int) -> None:
    """n generated slices, split 85/10/5 into keras_png_slices_{train,validate,test}."""
    rng = np.random.default_rng(0)
    counts = {"train": int(n * 0.85), "validate": int(n * 0.10)}
    counts["test"] = n - counts["train"] - counts["validate"]
    for split, k in counts.items():
        folder = root / f"keras_png_slices_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(k):
            Image.fromarray(fake_slice(rng, size)).save(folder / f"case_{i:05d}_slice_0.nii.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=9664)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--keep", help="write the slices here and keep them (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp) / "slices"
        t0 = time.time()
        if not (root / "keras_png_slices_test").exists():
            write_set(root, args.n, args.size)
        made = time.time() - t0
        env = {**os.environ, "BRAINVQ_CACHE": str(Path(tmp) / "cache"), "PYTHONWARNINGS": "ignore"}
        cmd = [
            sys.executable, "-m", "brainvq.cli", "train-vqvae", "--data", str(root),
            "--run", str(Path(tmp) / "run"), "--quiet", "--data.image_size", str(args.size),
            "--max-minutes", str(args.minutes),
        ]  # fmt: skip
        t1 = time.time()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        took = time.time() - t1
        if r.returncode != 0:
            print(r.stderr[-2000:], file=sys.stderr)
            return r.returncode
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # KiB -> GiB
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "-"
    block = result_block(
        "Peak memory on a full-OASIS-size set",
        f"{args.n} generated {args.size}x{args.size} slices (written in {made:.0f} s); "
        f"`brainvq train-vqvae --max-minutes {args.minutes:g}` (decode cache + training) ran "
        f"{took:.0f} s: **peak resident memory {peak_gb:.2f} GiB** "
        f"(`python bench/peak_memory.py --n {args.n} --size {args.size}`).\nLast line: {last}",
    )
    append_result(DOCS, "brainvq benchmarks", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
