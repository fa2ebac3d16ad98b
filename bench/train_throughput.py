"""Benchmark: VQ-VAE training throughput (images/s) of brainvq's step against a plain fp32 step.

Usage: python bench/train_throughput.py [--size 128] [--batch 16] [--steps 12] [--rounds 3]
           [--variants plain brainvq compile bf16]

All variants run in this one process on the same architecture (the default config's VQVAE), the
same random batch and the same optimizer (Adam), taking turns round by round so that a noisy
shared machine slows them alike; the figure per variant is its best round.

- plain: a textbook PyTorch step: fp32, NCHW, model(x), MSE + VQ loss, backward, Adam.
- brainvq: the step brainvq trains with (VQVAEModule.training_step: MSE + VQ + 0.1 (1 - SSIM))
  under the settings `precision=auto` resolves to on this machine (bf16 autocast on CPUs with
  native BF16, fp32 otherwise) and channels_last.
- compile: the brainvq step with the model under torch.compile (`--train.compile true`).
- bf16: the brainvq step with bf16 autocast forced (`--train.precision bf16`), whatever the CPU.

The ratios to `plain` are appended, with the machine, to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
from common import append_result, result_block

from brainvq.config import Config
from brainvq.nn.vqvae import recon_loss
from brainvq.training.hardware import cpu_has_bf16, resolve_precision
from brainvq.training.vqvae import VQVAEModule

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def make_step(variant: str, cfg: Config, x: torch.Tensor):
    """A closure doing one optimizer step of `variant` on batch x."""
    torch.manual_seed(0)
    c = Config.from_dict(cfg.to_dict())
    c.train.channels_last = variant != "plain"
    module = VQVAEModule(c)
    module.log = lambda *a, **k: None  # no Trainer here: logging is a no-op
    model = module.model
    if variant == "compile":
        module.model = torch.compile(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    precision = resolve_precision("auto", "cpu")
    if variant == "bf16":
        precision = "bf16-mixed"
    use_bf16 = variant != "plain" and precision == "bf16-mixed"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", torch.bfloat16) if use_bf16 else contextlib.nullcontext()
        with ctx:
            if variant == "plain":
                out = model(x)
                loss = recon_loss(out.recon, x) + out.vq_loss
            else:
                loss = module.training_step(x, 0)
        loss.backward()
        opt.step()

    return step, precision if variant != "plain" else "32-true"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["plain", "brainvq", "compile", "bf16"])
    args = ap.parse_args()
    cfg = Config()
    cfg.data.image_size = args.size
    x = torch.rand(args.batch, 1, args.size, args.size)
    steps, best, precision = {}, {}, {}
    for v in args.variants:
        steps[v], precision[v] = make_step(v, cfg, x)
        for _ in range(1 if v == "bf16" and not cpu_has_bf16() else 2):  # warm-up, compilation
            steps[v]()
        best[v] = float("inf")
    for r in range(args.rounds):
        for v in args.variants:
            slow = v == "bf16" and not cpu_has_bf16()  # emulated bf16: one short round only
            if slow and r > 0:
                continue
            n = 2 if slow else args.steps
            t0 = time.perf_counter()
            for _ in range(n):
                steps[v]()
            best[v] = min(best[v], (time.perf_counter() - t0) / n)
            print(f"round {r}: {v:8s} {args.batch / best[v]:7.1f} images/s", flush=True)
    base = args.batch / best["plain"] if "plain" in best else None
    rows = []
    for v in args.variants:
        ips = args.batch / best[v]
        ratio = f"{ips / base:.2f}x" if base else "-"
        rows.append((v, precision[v], f"{ips:.1f}", ratio))
    block = result_block(
        "Training throughput",
        f"VQ-VAE default config at {args.size}x{args.size}, batch {args.batch}, best of "
        f"{args.rounds} rounds of {args.steps} steps, all in one process "
        f"(`python bench/train_throughput.py --size {args.size} --batch {args.batch}`).",
        ["step", "precision", "images/s", "vs plain fp32"],
        rows,
    )
    append_result(DOCS, "brainvq benchmarks", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
