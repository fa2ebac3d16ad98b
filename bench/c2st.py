"""Benchmark: the classifier two-sample test (brainvq.evaluation.c2st) on the development data.

Usage: python bench/c2st.py [--run /work/runs/dev] [--data ../shared/data/brain-mri-128]
           [--kinds maskgit] [--pools 1 2 4] [--n 128] [--parts real controls models]
           [--threads T] [--no-timing]

Real test slices (held-out brains) against, at each pool (pool x pool pixel blocks averaged):
- real validation slices and a seeded subsample of n real training slices (other brains: what a
  perfect generator would score), folds kept whole per brain; the training subsample again with
  folds drawn slice by slice, to show what same-brain neighbours do to the test;
- the test slices blurred (Gaussian sigma 1 px) and noised (sigma 0.02): controls;
- the run's VQ-VAE reconstructions of the test slices, when RUN/vqvae.safetensors exists;
- n samples (seed 0, the prior's own temperature) of each KIND whose RUN/prior-KIND.safetensors
  exists.
--parts picks among these three groups of rows. Brains come from the file names (case_NNN). Each pair and its seconds go in a table appended, with
the machine, to bench/results/c2st.md; unless --no-timing, one call on n_time (300) training
slices a side of other training brains at full resolution is timed too.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import DEFAULT_DATA, append_result, data_missing, result_block

from brainvq.config import Config
from brainvq.data import discover, load_splits
from brainvq.evaluation.c2st import as_images, c2st

RESULTS = Path(__file__).parent / "results" / "c2st.md"
PARTS = ("real", "controls", "models")
COLUMNS = ["real test slices against", "folds", "n a side", "pool", "accuracy", "per fold", "s"]


def brains(files: list[Path]) -> list[str] | None:
    """The brain (case_NNN) of each slice file; None if any name lacks one."""
    found = [re.search(r"case_\d+", f.name) for f in files]
    return None if any(m is None for m in found) else [m.group(0) for m in found]


def blurred(images: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Images (N, H, W) blurred by a Gaussian of `sigma` pixels (reflected edges), float."""
    x = as_images(images)
    r = int(np.ceil(3 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1.0) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return x[:, 0].clamp(0, 1).numpy()


def noised(images: np.ndarray, sigma: float = 0.02, seed: int = 1) -> np.ndarray:
    """Images (N, H, W) plus Gaussian noise of `sigma`, clipped to [0, 1], float."""
    x = as_images(images)[:, 0].numpy()
    noise = np.random.default_rng(seed).normal(0, sigma, x.shape)
    return np.clip(x + noise, 0, 1).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="/work/runs/dev", help="run folder (/work/runs/dev)")
    ap.add_argument("--data", default=DEFAULT_DATA, help=f"data folder ({DEFAULT_DATA})")
    ap.add_argument("--kinds", nargs="+", default=["maskgit"])
    ap.add_argument("--pools", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--n", type=int, default=128, help="training slices / samples a side (128)")
    ap.add_argument("--n-time", type=int, default=300, help="slices a side in the timed call")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    if data_missing(args.data):
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run)
    has_vqvae = (run_dir / "vqvae.safetensors").exists()
    cfg = Config.load(run_dir / "config.toml") if (run_dir / "config.toml").exists() else Config()
    if not (run_dir / "config.toml").exists():
        cfg.data.image_size = 128
    arrays = load_splits(args.data, cfg.data, progress=False)
    files = discover(args.data, cfg.data).files
    test, val, train = arrays["test"], arrays["validate"], arrays["train"]
    g_test, g_val, g_train = (brains(files[k]) for k in ("test", "validate", "train"))
    pick = np.sort(np.random.default_rng(0).choice(len(train), args.n, replace=False))
    sub, g_sub = train[pick], None if g_train is None else [g_train[i] for i in pick]

    pairs = []  # label, other images, real groups, other groups, pools (None: --pools)
    if "real" in args.parts:
        pairs += [
            (f"real validation slices ({len(set(g_val or []))} brains)", val, g_test, g_val, None),
            (f"real training slices ({args.n} of {len(train)})", sub, g_test, g_sub, None),
            ("the same, folds drawn slice by slice", sub, None, None, None),
        ]
    if "controls" in args.parts:
        pairs += [
            ("themselves blurred, sigma 1 px", blurred(test), g_test, g_test, [1, 2]),
            ("themselves noised, sigma 0.02", noised(test), g_test, g_test, [1, 2]),
        ]
    notes = []
    if "models" not in args.parts:
        pass
    elif has_vqvae:
        from brainvq.priors import load_prior, prior_path
        from brainvq.runs import load_run
        from brainvq.sampling import sample_images

        run = load_run(run_dir)
        x = torch.from_numpy(test.astype(np.float32) / 255)[:, None]
        recon = run.vqvae.decode(run.vqvae.encode(x), 32)[:, 0].numpy()
        pairs.append(("their VQ-VAE reconstructions", recon, g_test, g_test, None))
        for kind in args.kinds:
            if not prior_path(run.dir, kind).exists():
                notes.append(f"no {kind} prior in {run_dir} yet: its row is missing")
                continue
            drawn = sample_images(run, load_prior(run, kind), args.n, seed=0)
            label = f"{kind} samples (T={drawn['temperature']:g}, {drawn['decoder']} decoder)"
            pairs.append((label, drawn["images"], g_test, None, None))
            pairs.append((label + ", folds slice by slice", drawn["images"], None, None, [2]))
    else:
        notes.append(f"no {run_dir}/vqvae.safetensors yet: the model rows are missing")

    rows = []
    for label, other, ga, gb, pools in pairs:
        for pool in pools or args.pools:
            t0 = time.perf_counter()
            r = c2st(test, other, pool=pool, real_groups=ga, other_groups=gb)
            seconds = time.perf_counter() - t0
            how = "by brain" if r["grouped"] else "by slice"
            rows.append(
                (
                    label,
                    f"{len(r['folds'])} {how}",
                    r["n_per_side"],
                    pool,
                    f"{r['accuracy']:.2f} +- {r['accuracy_std']:.2f}",
                    " ".join(f"{a:.2f}" for a in r["folds"]),
                    f"{seconds:.0f}",
                )
            )
            print(rows[-1], flush=True)

    timing = ""
    if not args.no_timing:
        rng = np.random.default_rng(1)
        order = rng.permutation(len(train))
        n = min(args.n_time, len(train) // 2)
        a, b = train[np.sort(order[:n])], train[np.sort(order[n : 2 * n])]
        t0, c0 = time.perf_counter(), time.process_time()
        r = c2st(a, b)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        timing = (
            f"\nTiming: one c2st call, {n} training slices a side ({a.shape[1]}x{a.shape[2]}, "
            f"pool 1, 5 folds by slice, default recipe) on {torch.get_num_threads()} torch "
            f"thread(s): {seconds:.0f} s wall, {cpu:.0f} s CPU (accuracy {r['accuracy']:.2f}; "
            "same brains on both sides, so not a reference).\n"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (
        f"\nData: {args.data} (test {len(test)} slices of {len(set(g_test or []))} brains, "
        f"validate {len(val)}, train {len(train)}); run {args.run}. Accuracy: mean +- std over "
        f"folds of held-out balanced accuracy (0.5 = indistinguishable). Load average at the end: "
        f"{load:.1f} on {os.cpu_count()} cores (a shared machine: seconds are inflated).\n"
        + "".join(f"Note: {n}.\n" for n in notes)
        + timing
        + f"`python bench/c2st.py --run {args.run} --data {args.data} --pools "
        f"{' '.join(map(str, args.pools))} --n {args.n} --parts {' '.join(args.parts)}"
        + (" --no-timing" if args.no_timing else "")
        + (f" --threads {args.threads}" if args.threads else "")
        + "`\n"
    )
    block = result_block("C2ST on the development data", text, COLUMNS, rows)
    append_result(RESULTS, "Classifier two-sample test (C2ST)", block)


if __name__ == "__main__":
    main()
