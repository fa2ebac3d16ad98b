"""The prior's two-sample test of one run's prior at chosen sampling settings, beside its reference.

Draws --n samples from the run's --kind prior (temperature, top-k and, for MaskGIT, the decoding
steps and the choice noise as given, else the prior's own), decodes them as `brainvq sample`
does (the tuned decoder where the run holds one), and runs brainvq.evaluation.prior_test: a
classifier telling the samples from the decoder's reconstructions of the --reference split's real
slices (folds by brain) at pools 1, 2 and 4, beside the reference (reconstructions of validation
vs test brains, cached in RUN/state/evaluate/). Prints one JSON object and, with --out, writes it.
Choose settings on --reference validate; score the test brains once.

    PYTHONPATH=src python bench/prior_c2st.py --run runs/x --kind maskgit --n 100 \\
        --temperature 1.0 --steps 12 --noise 4.5 --out bench/results/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from brainvq.evaluation.prior_test import PRIOR_POOLS, prior_two_sample  # noqa: E402
from brainvq.io import atomic_write_text  # noqa: E402
from brainvq.priors import load_prior, pick_kind  # noqa: E402
from brainvq.reporting.verdict import close_limit, prior_test_close  # noqa: E402
from brainvq.runs import load_run  # noqa: E402
from brainvq.sampling import sample_images  # noqa: E402


def set_decoding(prior, steps: int | None, noise: float | None) -> dict:
    """Apply MaskGIT's decoding steps and choice noise to a loaded prior (an error for a prior
    that has no such setting); returns those in use ({} for a prior without them)."""
    if (steps is not None or noise is not None) and not hasattr(prior, "steps"):
        raise SystemExit(f"--steps/--noise: the {prior.kind} prior has no parallel decoding")
    if steps is not None:
        prior.steps = steps
    if noise is not None:
        prior.noise = noise
    return {"steps": prior.steps, "noise": prior.noise} if hasattr(prior, "steps") else {}


def draw(
    run,
    kind: str,
    n: int,
    seed: int = 0,
    temperature: float | None = None,
    top_k: int | None = None,
    steps: int | None = None,
    noise: float | None = None,
) -> dict:
    """n samples at these settings (None: the prior's own), as brainvq.sampling.sample_images
    draws them, plus "decoding" (MaskGIT's steps and noise) and "sampling_seconds"."""
    prior = load_prior(run, kind)
    decoding = set_decoding(prior, steps, noise)
    t0 = time.perf_counter()
    drawn = sample_images(run, prior, n, seed, 64, temperature, top_k)
    drawn.update(decoding=decoding, sampling_seconds=round(time.perf_counter() - t0, 1))
    return drawn


def score_drawn(
    run,
    kind: str,
    drawn: dict,
    reference: str = "validate",
    folds: int = 5,
    pools=PRIOR_POOLS,
    data: str | None = None,
) -> dict:
    """The prior test of drawn samples beside its reference: a JSON-ready dict."""
    t0 = time.perf_counter()
    out = prior_two_sample(
        run,
        drawn["images"],
        kind,
        reference,
        pools=pools,
        folds=folds,
        seed=drawn["seed"],
        data=data,
    )
    test, ref = out["prior_c2st"], out["prior_c2st_reference"]
    return {
        "run": str(run.dir.path),
        "kind": kind,
        "n": len(drawn["images"]),
        "seed": drawn["seed"],
        "temperature": drawn["temperature"],
        "top_k": drawn["top_k"],
        **drawn["decoding"],
        "decoder": drawn["decoder"],
        "reference": reference,
        "close": prior_test_close(test, ref),
        "close_limits": {p: round(close_limit(ref, p), 4) for p in ref.get("pools", [])},
        "sampling_seconds": drawn["sampling_seconds"],
        "test_seconds": round(time.perf_counter() - t0, 1),
        **out,
    }


def prior_c2st_at(run, kind: str, n: int, seed: int = 0, temperature=None, top_k=None,
                  steps=None, noise=None, reference="validate", folds=5, pools=PRIOR_POOLS,
                  data=None) -> dict:  # fmt: skip
    """Draw n samples at these settings and run the prior test: a JSON-ready dict."""
    drawn = draw(run, kind, n, seed, temperature, top_k, steps, noise)
    return score_drawn(run, kind, drawn, reference, folds, pools, data)


def summary(r: dict) -> str:
    """One line: accuracy +- spread beside the reference at each pool."""
    test, ref = r["prior_c2st"], r["prior_c2st_reference"]
    if "skipped" in test:
        return f"prior test skipped: {test['skipped']}"
    cells = []
    for p in test["pools"]:
        mine = f"{test[f'pool{p}']:.3f}+-{test[f'pool{p}_std']:.3f}"
        theirs = f"{ref[f'pool{p}']:.3f}+-{ref[f'pool{p}_std']:.3f}" if f"pool{p}" in ref else "-"
        cells.append(f"pool {p}: {mine} (reference {theirs})")
    return f"{r['kind']} T={r['temperature']:g} top-k={r['top_k']}: " + "; ".join(cells)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the test, print (and write) the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder with a trained prior")
    ap.add_argument("--data", default=None, help="data folder (default: the run's)")
    ap.add_argument("--kind", default=None, help="prior kind (default: the run's)")
    ap.add_argument("--n", type=int, default=100, help="samples (100)")
    ap.add_argument("--seed", type=int, default=0, help="sampling and classifier seed (0)")
    ap.add_argument("--temperature", type=float, default=None, help="(the prior's own)")
    ap.add_argument("--top-k", type=int, default=None, help="(the prior's own; 0 = all codes)")
    ap.add_argument("--steps", type=int, default=None, help="MaskGIT decoding steps")
    ap.add_argument("--noise", type=float, default=None, help="MaskGIT choice noise")
    ap.add_argument("--reference", default="validate", choices=("validate", "test"))
    ap.add_argument("--folds", type=int, default=5, help="classifier folds (5)")
    ap.add_argument("--pools", default="1,2,4", help="pools (1,2,4)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    ap.add_argument("--out", default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_run(args.run)
    kind = pick_kind(run, args.kind)
    pools = tuple(int(p) for p in args.pools.split(","))
    r = prior_c2st_at(
        run, kind, args.n, args.seed, args.temperature, args.top_k, args.steps, args.noise,
        args.reference, args.folds, pools, args.data,
    )  # fmt: skip
    r["machine"] = machine()
    text = json.dumps(r, indent=1)
    print(text)
    print(summary(r), file=sys.stderr)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
