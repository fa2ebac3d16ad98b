"""Benchmark: issue 28's diagnosis check and TSTR on a trained conditioned prior.

Usage:
    python bench/utility.py diagnosis --run RUN [--target 'cdr>=1'] [--samples 200]
        [--steps 600] [--seeds 3] [--guidance 1] [--kind maskgit]
    python bench/utility.py tstr --run RUN [--target 'cdr>=1'] [-n N] [--steps 600]
        [--seeds 3] [--guidance 1] [--kind maskgit]

diagnosis: a classifier trained on the real training brains (brainvq.evaluation.conditioning
.class_fidelity, the network of brainvq.evaluation.utility) labels --samples samples, half asked
for each class (CDR 0 and CDR >= 1), and the share labelled as asked is set beside its balanced
accuracy on the real test slices; once per classifier seed. Target: the share at >= 90% of the
test accuracy. tstr: `brainvq utility` (synthetic only, real, both; tested on the real test
brains). Target: synthetic within 0.05 of real, both no worse than real. Each appends a table
with the machine, the load average and the time taken to bench/results/conditioning.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from brainvq.evaluation.conditioning import class_fidelity, split_point
from brainvq.evaluation.utility import (
    STEPS,
    class_target,
    format_utility,
    parse_target,
    real_covariates,
    utility_run,
)
from brainvq.priors import load_prior
from brainvq.runs import load_run
from brainvq.sampling import sample_images

sys.path.insert(0, str(Path(__file__).parent))
from common import DEFAULT_DATA, append_result, data_missing, result_block  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "conditioning.md"


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def diagnosis(a) -> tuple[str, list[str], list[list]]:
    """The diagnosis check: (text, columns, one row per classifier seed)."""
    run = load_run(a.run)
    prior = load_prior(run, a.kind)
    target = parse_target(a.target, prior.covariates, prior.source or a.kind)
    real = real_covariates(run, a.data, [target.name])
    if target.task == "regress":  # a continuous covariate without a threshold: cut at the median
        spec = next(s for s in prior.covariates if s["name"] == target.name)
        target = class_target(spec, split_point(real["train"][target.name]))

    def draw(asked: dict, seed: int) -> np.ndarray:
        n = len(next(iter(asked.values())))
        return sample_images(run, prior, n, seed, covariates=asked, guidance=a.guidance)["images"]

    rows = []
    for seed in range(a.seeds):
        c = class_fidelity(draw, target, real, a.samples, a.steps, seed)
        per = ", ".join(f"{k}: {v:.0%}" for k, v in zip(c["asked"], c["per_class"], strict=True))
        verdict = "yes" if c["ratio"] >= 0.9 else "no"
        rows.append([seed, c["samples"], f"{c['sample_accuracy']:.3f}", per,
                     f"{c['test_accuracy']:.3f}", f"{c['ratio']:.2f}", verdict])  # fmt: skip
    text = (
        f"Target {target.text()} (classes {', '.join(target.classes)}), prior {a.kind} of "
        f"{a.run}, guidance {a.guidance:g}; classifier {a.steps} steps on the real training "
        "brains; 'test' = its balanced accuracy on the real test slices; the issue asks the "
        "samples' share at >= 90% of it."
    )
    columns = ["seed", "samples", "labelled as asked", "per class", "test", "ratio", ">= 0.90"]
    return text, columns, rows


def tstr(a) -> tuple[str, list[str], list[list]]:
    """TSTR: (text, columns, one row per training set)."""
    res = utility_run(a.run, a.kind, a.target, a.n, a.data, a.steps, a.seeds, a.guidance,
                      progress=True)  # fmt: skip
    print(format_utility(res))
    keys = ("accuracy", "balanced_accuracy") if res["task"] == "classify" else ("r", "mae")
    rows = []
    for name, r in res["results"].items():
        rows.append([name, r["n_train"], *(f"{r[k]:.3f} +- {r[k + '_std']:.3f}" for k in keys)])
    real, syn, both = (res["results"][k][keys[0]] for k in ("real", "synthetic", "both"))
    sign = 1 if keys[0] != "mae" else -1
    text = (
        f"Target {res['target']} ({res['task']}), prior {res['kind']} of {a.run}, guidance "
        f"{res['guidance']:g}; {res['steps']} steps x {res['seeds']} seeds per set; tested on "
        f"{res['n_test']} slices of {res['test_brains']} real test brains. Synthetic within 0.05 "
        f"of real: {'yes' if real - syn <= 0.05 else 'no'} ({syn - real:+.3f}); both no worse "
        f"than real: {'yes' if sign * (both - real) >= 0 else 'no'} ({both - real:+.3f})."
    )
    return text, ["trained on", "slices", *keys], rows


def main() -> None:
    """Run one measurement and append its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("measure", choices=("diagnosis", "tstr"))
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--kind", default="maskgit")
    ap.add_argument("--target", default="cdr>=1")
    ap.add_argument("--samples", type=int, default=200, help="diagnosis: samples, half a class")
    ap.add_argument("-n", type=int, help="tstr: synthetic slices (default: as many as real)")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--results", default=str(RESULTS), help="markdown file the table goes to")
    a = ap.parse_args()
    if data_missing(a.data):
        return
    start, before = time.perf_counter(), load()
    text, columns, rows = (diagnosis if a.measure == "diagnosis" else tstr)(a)
    text = (
        f"\n`python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`: {text} Took "
        f"{time.perf_counter() - start:.0f} s; load average {before} at the start, {load()} at "
        "the end."
    )
    heading = "Diagnosis of samples" if a.measure == "diagnosis" else "TSTR"
    append_result(
        Path(a.results), "Conditioning fidelity", result_block(heading, text, columns, rows)
    )


if __name__ == "__main__":
    main()
