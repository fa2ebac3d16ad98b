"""Benchmark: do samples asked for an anatomy have it? Asked vs measured ventricle (and brain)
fraction of a prior trained with prior.conditions naming them (issue 28; Pinaya et al. 2022
report r = 0.972 for ventricular volume in 3D).

Usage: python bench/conditioning.py --run RUN [--data ../shared/data/brain-mri-128]
           [--kind maskgit] [--covariate ventricle_fraction] [--values 10] [--per-value 20]
           [--guidance 1] [--figure bench/results/conditioning_row.png]

For each covariate asked (each in turn, the others unknown): --values values spread evenly
between the 5th and 95th percentile of the real training slices' values, --per-value samples at
each (seeds 0 ..), the covariate measured on each sample by brainvq.data.anatomy; the Pearson r
of asked against measured over all samples, the mean and spread of measured per asked value, and
the same r of the real test slices' own values against themselves measured after a VQ-VAE
round trip (what a perfect prior could reach through this decoder). The figure: one sample per
asked value, in a row, rising. Appends a table with the machine and the command to
bench/results/conditioning.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from brainvq.codes import encode_images
from brainvq.data import load_data
from brainvq.data.anatomy import ANATOMY, anatomy
from brainvq.priors import load_prior
from brainvq.runs import load_run
from brainvq.sampling import image_grid, sample_images

sys.path.insert(0, str(Path(__file__).parent))
from common import DEFAULT_DATA, append_result, data_missing, result_block  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "conditioning.md"


def asked_values(real: np.ndarray, count: int) -> np.ndarray:
    """count values evenly between the 5th and 95th percentile of the real values."""
    low, high = np.percentile(real, [5, 95])
    return np.linspace(low, high, count)


def measure(run, prior, name: str, values: np.ndarray, per_value: int, guidance: float):
    """(asked (N,), measured (N,), one image per asked value) over per_value samples each."""
    asked, measured, row = [], [], []
    for i, v in enumerate(values):
        drawn = sample_images(
            run, prior, per_value, seed=i, covariates={name: float(v)}, guidance=guidance
        )
        asked += [v] * per_value
        measured += list(anatomy(drawn["images"])[name])
        row.append(drawn["images"][0])
    return np.array(asked), np.array(measured), np.stack(row)


def main() -> None:
    """Run the benchmark and append its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--kind", default="maskgit")
    ap.add_argument("--covariate", action="append", choices=ANATOMY)
    ap.add_argument("--values", type=int, default=10)
    ap.add_argument("--per-value", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--figure", default="bench/results/conditioning_row.png")
    ap.add_argument("--results", default=str(RESULTS), help="markdown file the table goes to")
    a = ap.parse_args()
    if data_missing(a.data):
        return
    start, before = time.perf_counter(), " ".join(f"{v:.2f}" for v in os.getloadavg())
    run = load_run(a.run)
    prior = load_prior(run, a.kind)
    _, arrays = load_data(a.data, run.config.data, progress=False)
    real = anatomy(arrays["train"])
    test = anatomy(arrays["test"])
    codes = torch.from_numpy(encode_images(run, arrays["test"], 64))
    with torch.no_grad():
        recon = anatomy(run.vqvae.decode(codes, 64)[:, 0].numpy())
    rows = []
    for name in a.covariate or ["ventricle_fraction"]:
        values = asked_values(real[name], a.values)
        asked, measured, row = measure(run, prior, name, values, a.per_value, a.guidance)
        r = float(np.corrcoef(asked, measured)[0, 1])
        r_recon = float(np.corrcoef(test[name], recon[name])[0, 1])
        per = "; ".join(
            f"{v:.3f}: {measured[asked == v].mean():.3f}+-{measured[asked == v].std():.3f}"
            for v in values
        )
        rows.append([name, len(asked), f"{r:.3f}", f"{r_recon:.3f}", per])
        if name == "ventricle_fraction" and a.figure:
            Path(a.figure).parent.mkdir(parents=True, exist_ok=True)
            image_grid(row, Path(a.figure), ncol=len(row))
    text = (
        f"\n`python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`: prior {a.kind} of "
        f"{a.run} (conditions {', '.join(c['name'] for c in prior.covariates)}), guidance "
        f"{a.guidance:g}; r(VQ-VAE) = the real test slices' values against their "
        "reconstructions' (the ceiling through this decoder). Took "
        f"{time.perf_counter() - start:.0f} s; load average {before} at the start, "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end."
    )
    columns = ["covariate", "samples", "Pearson r asked vs measured", "r(VQ-VAE)", "per value"]
    append_result(
        Path(a.results), "Conditioning fidelity", result_block("Anatomy", text, columns, rows)
    )


if __name__ == "__main__":
    main()
