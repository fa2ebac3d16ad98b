"""Train one prior variant on a GPU machine and pack what scoring it elsewhere needs.

Usage (on the device machine, from the repository root; see bench/device_priors.sh):
    python3 bench/device_prior_variant.py NAME KIND MINUTES [prior.KEY=VALUE ...]
        [--base .devdata/run] [--data .devdata/brain-mri-128] [--out $OUT]

Copies the base run folder (a trained VQ-VAE with its cached code maps) to /tmp/runs/NAME, trains
the KIND prior there from scratch for MINUTES with the overrides, draws 100 code maps (seed 0) at
temperatures 1.0 and 0.6 on the GPU, and writes OUT/NAME.tar holding samples.npz (the codes, the
stage summary, wall time, overrides), prior-KIND.safetensors and the training logs; a tar over
15 MiB is split into NAME.tar.partN (the device tool returns files of up to 16 MiB; join with cat).
Score it back here by copying the weights into a run folder with the same VQ-VAE and running
`brainvq evaluate --run RUN --kind KIND [--temperature T]`.
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

from brainvq.priors import load_prior
from brainvq.runs import load_run
from brainvq.training.prior_stage import train_prior

PART = 15 * 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("kind")
    ap.add_argument("minutes", type=float)
    ap.add_argument("overrides", nargs="*", help="prior.KEY=VALUE")
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
    run = load_run(run_dir)
    cfg = run.config
    cfg.override([f"prior.max_minutes={args.minutes}", f"prior.kind={args.kind}", *args.overrides])
    t0 = time.time()
    summary = train_prior(
        str(run_dir), cfg, kind=args.kind, data=args.data, fresh=True, progress=False
    )
    wall = time.time() - t0
    print(args.name, json.dumps(summary), f"wall {wall:.0f} s", flush=True)

    prior = load_prior(run, args.kind).to("cuda" if torch.cuda.is_available() else "cpu")
    t1 = time.time()
    codes = {
        f"codes_t{int(t * 10):02d}": prior.sample(100, seed=0, temperature=t).numpy()
        for t in (1.0, 0.6)
    }
    sample_s = time.time() - t1
    buf = io.BytesIO()
    np.savez(
        buf,
        summary=json.dumps(summary),
        wall=wall,
        sample_s=sample_s,
        overrides=json.dumps(args.overrides),
        **codes,
    )
    tar_path = Path("/tmp") / f"{args.name}.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("samples.npz")
        info.size = buf.tell()
        buf.seek(0)
        tar.addfile(info, buf)
        tar.add(run_dir / f"prior-{args.kind}.safetensors", f"prior-{args.kind}.safetensors")
        tar.add(run_dir / "logs", "logs")
    data = tar_path.read_bytes()
    if len(data) <= PART:
        (out / f"{args.name}.tar").write_bytes(data)
    else:
        for i in range(0, len(data), PART):
            (out / f"{args.name}.tar.part{i // PART}").write_bytes(data[i : i + PART])
    print(args.name, f"sampled 2x100 in {sample_s:.1f} s; packed {len(data) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
