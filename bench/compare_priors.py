"""Benchmark: every prior trained on the same code maps for the same wall-clock budget, one table.

Usage: python bench/compare_priors.py [--vqvae-run runs/bench-vqvae] [--run runs/priors-bench]
           [--data ../shared/data/brain-mri-128] [--minutes 12] [--kinds dcgan pixelcnn transformer maskgit]
           [--set [KIND:]prior.key=value ...] [--n 100]
       python bench/compare_priors.py --evaluate-only --kinds transformer --temperature 0.8
       brainvq tune-decoder --run runs/priors-bench --max-minutes 8 &&
         python bench/compare_priors.py --evaluate-only --kinds maskgit --temperature 0.6

RUN gets a copy of the trained VQ-VAE of --vqvae-run (bench/vqvae_budget.py makes one), so every
prior sees the same code maps. Each prior is trained from scratch for --minutes, then
``brainvq.evaluation.evaluate.evaluate_samples`` draws n samples (seed 0) and scores them: NN-SSIM against
the training split, realism ratio, diversity beside the real test slices', copies, code-histogram
distance, bits per code on the test code maps (priors with a likelihood), and samples/second
(sampling plus decoding, batch 100, this machine). The table, with the machine, is appended to
bench/results/priors.md and docs/benchmarks.md. ``--evaluate-only`` skips training and scores
the priors RUN already holds, e.g. under another ``--temperature`` / ``--top-k``, or after
``brainvq tune-decoder`` (such rows say "tuned decoder").
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from pathlib import Path

from common import DEFAULT_DATA, append_result, data_missing, machine

from brainvq.config import PRIOR_KINDS, Config
from brainvq.evaluation.evaluate import evaluate_samples
from brainvq.runs import load_run
from brainvq.training.prior import train_prior

RESULTS = Path(__file__).parent / "results" / "priors.md"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
COLUMNS = (
    "prior",
    "NN-SSIM mean",
    "realism ratio",
    "diversity (real)",
    "copies",
    "code-hist dist",
    "bits/code test",
    "samples/s",
    "train min (steps)",
)


def row(kind: str, trained: dict | None, s: dict) -> str:
    bits = s.get("test_bits_per_code")
    sampling = f" T={s['temperature']:g}, top-k {s['top_k'] or 'all'}" if "temperature" in s else ""
    if s.get("decoder") == "tuned":  # brainvq tune-decoder was run on this prior
        sampling += ", tuned decoder"
    cells = (
        kind + sampling,
        f"{s['nn_ssim_mean']:.3f}",
        f"{s['realism_ratio']:.3f}",
        f"{s['diversity_samples']:.3f} ({s['diversity_real_test']:.3f})",
        str(s["copies"]),
        f"{s['code_hist_distance']:.3f}",
        "n/a (no likelihood)" if bits is None else f"{bits:.3f}",
        f"{s['samples_per_second']:.1f}",
        f"{trained['seconds'] / 60:.1f} ({trained['steps']})" if trained else "(trained before)",
    )
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vqvae-run", default="runs/bench-vqvae")
    ap.add_argument("--run", default="runs/priors-bench")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--kinds", nargs="+", default=list(PRIOR_KINDS))
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="prior.key=value for every prior, or KIND:prior.key=value for one kind",
    )
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--evaluate-only", action="store_true", help="score the priors RUN holds")
    ap.add_argument("--temperature", type=float, help="sampling temperature (default: config)")
    ap.add_argument("--top-k", type=int, help="sampling top-k (default: config)")
    args = ap.parse_args()
    if data_missing(args.data):
        return 0
    src, run_path = Path(args.vqvae_run), Path(args.run)
    run_path.mkdir(parents=True, exist_ok=True)
    for name in ("config.toml", "data.json", "vqvae.safetensors"):
        if not (run_path / name).exists():
            shutil.copy2(src / name, run_path / name)
    lines = []
    for kind in args.kinds:
        mine = [o.split(":", 1)[1] for o in args.set if o.startswith(f"{kind}:")]
        common = [o for o in args.set if ":" not in o.split("=")[0]]
        cfg = Config().override([f"prior.max_minutes={args.minutes}", *common, *mine])
        trained = None
        if not args.evaluate_only:
            trained = train_prior(str(run_path), cfg, kind, args.data, fresh=True, progress=False)
        scores = evaluate_samples(
            str(run_path), kind, args.data, args.n, 0, args.temperature, args.top_k
        )
        lines.append(row(kind, trained, scores))
        print(lines[-1], flush=True)
    vq = load_run(run_path).config.vqvae
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    budget = "priors already trained" if args.evaluate_only else f"{args.minutes:g} min per prior"
    block = (
        f"\n## {when}: {budget}, {args.n} samples, seed 0\n\n"
        f"Machine: {machine()}\n"
        f"Data: {args.data}; VQ-VAE from {src} (K={vq.codebook_size}, "
        f"{vq.downsample}x down); overrides: {' '.join(args.set) or 'none'}\n\n"
        f"| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}\n" + "\n".join(lines) + "\n"
    )
    append_result(RESULTS, "Priors compared on the same code maps and budget", block)
    with DOCS.open("a") as f:  # the sampling-throughput column belongs in docs/benchmarks.md too
        f.write(block.replace("\n## ", "\n## Priors (bench/compare_priors.py), ", 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
