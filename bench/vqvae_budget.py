"""Benchmark: test reconstruction SSIM of the default config after a wall-clock training budget.

Usage: python bench/vqvae_budget.py [DATA] [--minutes 15] [--run runs/bench-vqvae]
Defaults to ../shared/data/brain-mri-128 at 128x128 and 15 minutes; appends a result block with the
machine it ran on to bench/results/vqvae_budget.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from brainvq.training.hardware import cpu_has_bf16, resolve_precision

RESULTS = Path(__file__).parent / "results" / "vqvae_budget.md"


def machine() -> str:
    """One line describing the machine."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, BF16={cpu_has_bf16()}, {gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def result_block(heading: str, text: str, columns: list[str] | None = None, rows=()) -> str:
    """A markdown block: '## HEADING, date', the machine, text, then an optional table."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    block = f"\n## {heading}, {when}\n\nMachine: {machine()}\n{text}\n"
    if columns:
        block += f"\n| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n"
        block += "".join(f"| {' | '.join(map(str, r))} |\n" for r in rows)
    return block


def append_result(path: Path, title: str, block: str) -> None:
    """Append a result block to a markdown file (created with a title), and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(f"# {title}\n\nWritten by bench/{Path(sys.argv[0]).name}.\n")
    with path.open("a") as f:
        f.write(block)
    print(block)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default="../shared/data/brain-mri-128")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--run", default="runs/bench-vqvae")
    args = ap.parse_args()
    if not Path(args.data).exists():
        print(f"skip: {args.data} not found", file=sys.stderr)
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
    block = (
        f"\n## {datetime.date.today()}: {args.minutes:g}-minute budget, {args.data} at "
        f"{args.image_size}x{args.image_size}\n\n"
        f"- machine: {machine()}; precision {precision}\n"
        f"- command: `{' '.join(train[2:])}` then `brainvq evaluate --run {args.run}`\n"
        f"- train command wall time: {wall / 60:.1f} min (budget {args.minutes:g} min of training)\n"
        f"- test SSIM (skimage) mean {m['ssim']['mean']:.4f}, std {m['ssim']['std']:.4f}, "
        f"min {m['ssim']['min']:.4f}, max {m['ssim']['max']:.4f}; PSNR {m['psnr']['mean']:.2f} dB\n"
        f"- codebook: {m['codes_used']}/{m['codes_used'] / m['codebook_usage']:.0f} codes used "
        f"on the test split ({m['codebook_usage']:.1%}), perplexity {m['perplexity']:.1f}\n"
    )
    append_result(RESULTS, "VQ-VAE under a wall-clock budget", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
