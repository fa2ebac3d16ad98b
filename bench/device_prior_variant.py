"""Train one prior variant on a GPU machine and pack what scoring it elsewhere needs.

Usage (on the device machine, from the repository root; see bench/device_priors.sh):
    python3 bench/device_prior_variant.py NAME KIND MINUTES [prior.KEY=VALUE ...]
        [--snapshots M1,M2,...] [--base .devdata/run] [--data .devdata/brain-mri-128] [--out $OUT]

Copies the base run folder (a trained VQ-VAE with its cached code maps) to /tmp/runs/NAME, trains
the KIND prior there from scratch for MINUTES with the overrides, draws 100 code maps (seed 0) at
temperature 1.0 and the kind's default (0.6 for maskgit, 0.8 for dcgan) on the GPU, and writes
OUT/NAME.tar holding samples.npz (the codes, the stage summary, wall time, overrides),
prior-KIND.safetensors and the training logs; a tar over 15 MiB is split into NAME.tar.partN (the
device tool returns files of up to 16 MiB; join with cat). With --snapshots the training stops at
each of those minutes (counted over the whole training, as a resumed stage counts them), draws the
same maps there (codes_mM_tTT in samples.npz) and keeps those weights (prior-KIND-mM.safetensors),
then resumes up to MINUTES: one run gives the curve of sample quality against training time. The
tar is rewritten after every snapshot, so a call cut off at its time limit still returns those.
Score it back here with `python bench/score_device_samples.py OUT/NAME.tar` (or copy the weights
into a run folder with the same VQ-VAE and run `brainvq evaluate --run RUN --kind KIND`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

from brainvq.config import KIND_TEMPERATURE
from brainvq.priors import load_prior, prior_path
from brainvq.runs import load_run
from brainvq.training.prior import train_prior

PART = 15 * 2**20


def pack(args, run_dir: Path, summaries, codes, weights, wall: float, sample_s: float) -> float:
    """OUT/NAME.tar (or its parts) with samples.npz, the weights files and the logs so far;
    replaces an earlier pack. Returns its size in MiB."""
    out = Path(args.out)
    for old in [*out.glob(f"{args.name}.tar"), *out.glob(f"{args.name}.tar.part*")]:
        old.unlink()
    buf = io.BytesIO()
    np.savez(
        buf,
        summary=json.dumps(summaries[-1]),
        wall=wall,
        sample_s=sample_s,
        overrides=json.dumps(args.overrides),
        snapshots=json.dumps(summaries),
        **codes,
    )
    tar_path = Path("/tmp") / f"{args.name}.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("samples.npz")
        info.size = buf.tell()
        buf.seek(0)
        tar.addfile(info, buf)
        for f in weights:
            tar.add(f, f.name)
        tar.add(run_dir / "logs", "logs")
    data = tar_path.read_bytes()
    if len(data) <= PART:
        (out / f"{args.name}.tar").write_bytes(data)
    else:
        for i in range(0, len(data), PART):
            (out / f"{args.name}.tar.part{i // PART}").write_bytes(data[i : i + PART])
    return len(data) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("kind")
    ap.add_argument("minutes", type=float)
    ap.add_argument("overrides", nargs="*", help="prior.KEY=VALUE")
    ap.add_argument(
        "--snapshots", default="", help="comma-separated minutes to draw samples at on the way"
    )
    ap.add_argument("--base", default=".devdata/run")
    ap.add_argument("--data", default=".devdata/brain-mri-128")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    ap.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (several run at once)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = Path("/tmp/runs") / args.name
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(args.base, run_dir)
    for f in (run_dir / "codes").glob("*.npy"):  # newer than the VQ-VAE: the cache stays valid
        f.touch()
    marks = sorted(float(m) for m in args.snapshots.split(",") if m.strip())
    marks = [m for m in marks if 0 < m < args.minutes] + [args.minutes]
    temps = sorted({1.0, KIND_TEMPERATURE.get(args.kind, 1.0)}, reverse=True)
    codes, summaries, kept = {}, [], []
    t0 = time.time()
    sample_s = 0.0
    for i, minutes in enumerate(marks):
        run = load_run(run_dir)
        cfg = run.config
        cfg.override([f"prior.max_minutes={minutes}", f"prior.kind={args.kind}", *args.overrides])
        weights = prior_path(run.dir, args.kind)
        weights.unlink(missing_ok=True)  # past a snapshot: resume from the stage's checkpoint
        summary = train_prior(
            str(run_dir), cfg, kind=args.kind, data=args.data, fresh=i == 0, progress=False
        )
        summaries.append({"minutes": minutes, **summary})
        print(args.name, json.dumps(summaries[-1]), f"wall {time.time() - t0:.0f} s", flush=True)
        prior = load_prior(run, args.kind).to("cuda" if torch.cuda.is_available() else "cpu")
        t1 = time.time()
        tag = "" if minutes == args.minutes else f"m{minutes:g}_"
        for t in temps:
            codes[f"codes_{tag}t{int(round(t * 10)):02d}"] = prior.sample(
                100, seed=0, temperature=t
            ).numpy()
        sample_s += time.time() - t1
        if tag:
            snap = run_dir / f"prior-{args.kind}-m{minutes:g}.safetensors"
            shutil.copyfile(weights, snap)
            kept.append(snap)
        else:
            kept.append(weights)
        # packed after every snapshot: a call cut off at its time limit still returns the rest
        size = pack(args, run_dir, summaries, codes, kept, time.time() - t0, sample_s)
        print(args.name, f"sampled {len(codes)}x100 in {sample_s:.1f} s; packed {size:.1f} MiB")


if __name__ == "__main__":
    main()
