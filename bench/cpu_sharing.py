"""Benchmark: VQ-VAE training steps/s alone and beside a CPU-bound job, before and after the fix.

Usage: python bench/cpu_sharing.py [--seconds 20] [--rounds 3] [--size 128] [--batch 16]

Each measurement is a fresh worker process doing brainvq's VQ-VAE training step (the default
config's VQVAEModule.training_step and Adam, as in bench/train_throughput.py) for --seconds after
two warm-up steps, and reporting steps/s. It runs in one of three settings:

- alone: nothing started beside it (the machine's other load is recorded, not removed);
- beside a busy Python loop (`while True: pass`, one CPU-bound thread);
- beside a second brainvq: another worker doing the same steps under the same policy.

and under two policies:

- before: the environment brainvq ran under before the fix (libgomp's default wait policy: a
  thread that waits at the end of a parallel region spins for a while before it sleeps);
- after: the environment `brainvq` now sets up at start (brainvq.cli.share_cpu: OMP_WAIT_POLICY
  PASSIVE unless set, so waiting threads sleep and leave the CPU to whoever can use it).

Rounds interleave every (policy, setting) pair so that a shared machine's changing load falls on
all of them alike; the table gives the median of the rounds, each one's slowdown against its own
policy's "alone", and the load average seen during each measurement. Results go to
bench/results/cpu_sharing.md with the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cpu_sharing.md"
SETTINGS = ("alone", "busy loop", "second brainvq")
POLICIES = ("before", "after")


def worker(seconds: float, size: int, batch: int) -> None:
    """Train for `seconds` and print 'STEPS_PER_S <rate>' (run in a child process)."""
    import torch
    from train_throughput import make_step

    from brainvq.config import Config

    cfg = Config()
    cfg.data.image_size = size
    x = torch.rand(batch, 1, size, size)
    step, _ = make_step("brainvq", cfg, x)
    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    print(f"STEPS_PER_S {n / (time.perf_counter() - t0):.4f}", flush=True)


def policy_env(policy: str) -> dict[str, str]:
    """The environment of a worker under `policy`."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy == "after":
        from brainvq.cli import share_cpu

        share_cpu(env)
    return env


def measure(policy: str, setting: str, args) -> tuple[float, float]:
    """(steps/s of the measured worker, mean load average during it)."""

    def cmd(seconds: float) -> list[str]:
        shape = ["--size", str(args.size), "--batch", str(args.batch)]
        return [sys.executable, __file__, "--worker", "--seconds", str(seconds), *shape]

    env = policy_env(policy)
    beside = None
    if setting == "busy loop":
        beside = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    elif setting == "second brainvq":  # the same steps, running past the measured worker's end
        beside = subprocess.Popen(cmd(args.seconds * 4), env=env, stdout=subprocess.DEVNULL)
    loads = []
    try:
        proc = subprocess.Popen(cmd(args.seconds), env=env, stdout=subprocess.PIPE, text=True)
        while proc.poll() is None:
            loads.append(os.getloadavg()[0])
            time.sleep(2)
        out = proc.stdout.read()
    finally:
        if beside is not None:
            beside.kill()
            beside.wait()
    rate = float(out.split("STEPS_PER_S")[1].split()[0])
    return rate, statistics.mean(loads) if loads else os.getloadavg()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="timed seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.seconds, args.size, args.batch)
        return 0
    from common import append_result, result_block

    rates: dict[tuple[str, str], list[float]] = {}
    loads: dict[tuple[str, str], list[float]] = {}
    started = os.getloadavg()
    for r in range(args.rounds):
        for setting in SETTINGS:
            for policy in POLICIES:
                rate, load = measure(policy, setting, args)
                rates.setdefault((policy, setting), []).append(rate)
                loads.setdefault((policy, setting), []).append(load)
                print(
                    f"round {r}: {policy:6s} {setting:15s} {rate:6.3f} steps/s (load {load:.1f})",
                    flush=True,
                )
    rows = []
    for policy in POLICIES:
        alone = statistics.median(rates[(policy, "alone")])
        for setting in SETTINGS:
            key = (policy, setting)
            med = statistics.median(rates[key])
            each = " / ".join(f"{v:.2f}" for v in rates[key])
            load = " / ".join(f"{v:.1f}" for v in loads[key])
            slow = "1" if setting == "alone" else f"{alone / med:.2f}x"
            rows.append((policy, setting, f"{med:.2f}", each, slow, load))
    block = result_block(
        "CPU sharing",
        f"VQ-VAE training steps/s (default config, {args.size}x{args.size}, batch {args.batch}), "
        f"{args.seconds:g} s per measurement, {args.rounds} interleaved rounds "
        f"(`python bench/cpu_sharing.py --seconds {args.seconds:g} --rounds {args.rounds}`). "
        f"`before`: libgomp's default wait policy; `after`: what `brainvq` sets at start "
        f"(brainvq.cli.share_cpu). Load average (1 min) at the start: "
        f"{' / '.join(f'{v:.1f}' for v in started)} on {os.cpu_count()} CPUs.",
        ["policy", "beside", "steps/s (median)", "each round", "slowdown vs alone", "load avg"],
        rows,
    )
    append_result(RESULTS, "CPU sharing", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
