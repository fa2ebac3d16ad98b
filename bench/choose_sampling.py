"""Choose a prior's sampling settings on the validation brains by the prior's two-sample test.

The rule, fixed before any run:

1. Candidates, searched one setting at a time from the prior's own settings, each setting's best
   kept before the next is swept: temperature over --temperatures (0.6, 0.8, 1.0, 1.2), then
   top-k over --top-ks (0 = all codes, 64, 16), then for MaskGIT the decoding steps over --steps
   (8, 12, 16) and the choice noise over --noises (0, 2, 4.5; the scale of the annealed Gumbel
   noise on the confidences, prior.maskgit.noise).
2. Each candidate draws --n samples (for each of --seeds) and is scored against the VALIDATION
   brains only (the test brains stay unseen): the prior's two-sample test
   (brainvq.evaluation.prior_test: a classifier telling the samples from the decoder's
   reconstructions of the validation slices, folds by brain) at pools 4 and 2, the diversity gap
   (samples' mean pairwise SSIM minus the validation slices') and the copies (samples closer to a
   training slice than any validation slice comes), each averaged over the seeds (copies summed).
3. A candidate is admissible when |diversity gap| <= MAX_DIVERSITY_GAP (0.05) and it has no
   copies (MAX_COPIES = 0).
4. The chosen one is the admissible candidate with the lowest pool-4 accuracy; within TIE (0.01)
   of it, the lowest pool-2 accuracy; then the one first tried (the prior's own settings come
   first). If no candidate is admissible, the lowest pool-4 accuracy over all, marked
   "admissible": false. NN-SSIM (the realism ratio) is reported but never chooses.

Writes every candidate and the choice as JSON (--out, default
RUN/state/evaluate/sampling_choice.json) and prints the chosen settings as flags. Then score the
test brains once with them (bench/prior_c2st.py --reference test, or `brainvq evaluate`).

    PYTHONPATH=src python bench/choose_sampling.py --run runs/x --kind maskgit --n 100
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from common import machine
from prior_c2st import draw, score_drawn

from brainvq.data import load_splits
from brainvq.evaluation.manifest import reference_cache
from brainvq.evaluation.realism import score_samples
from brainvq.io import atomic_write_text
from brainvq.priors import load_prior, pick_kind
from brainvq.runs import load_run

MAX_DIVERSITY_GAP = 0.05
MAX_COPIES = 0
TIE = 0.01
POOLS = (2, 4)


def evaluate_candidate(run, kind: str, settings: dict, args, train, val) -> dict:
    """One candidate's scores on the validation brains, averaged over the seeds."""
    runs = []
    for seed in args.seeds:
        drawn = draw(run, kind, args.n, seed, **settings)
        r = score_drawn(run, kind, drawn, "validate", args.folds, POOLS, args.data)
        s, _ = score_samples(
            drawn["images"], train, val, candidates=run.config.eval.nn_candidates,
            cache_dir=reference_cache(run),
        )  # fmt: skip
        r.update(diversity_gap=s["diversity_gap"], copies=s["copies"])
        r["realism_ratio"] = s["realism_ratio"]
        runs.append(r)
    test = [r["prior_c2st"] for r in runs]
    out = {**settings, "per_seed": runs}
    for p in POOLS:
        out[f"pool{p}"] = float(np.mean([t.get(f"pool{p}", np.nan) for t in test]))
        out[f"reference_pool{p}"] = runs[0]["prior_c2st_reference"].get(f"pool{p}")
    out["diversity_gap"] = float(np.mean([r["diversity_gap"] for r in runs]))
    out["copies"] = int(sum(r["copies"] for r in runs))
    out["realism_ratio"] = float(np.mean([r["realism_ratio"] for r in runs]))
    out["admissible"] = (
        abs(out["diversity_gap"]) <= MAX_DIVERSITY_GAP and out["copies"] <= MAX_COPIES
    )
    return out


def choose(candidates: list[dict]) -> dict:
    """The rule's choice among scored candidates (in the order tried)."""
    pool = [c for c in candidates if c["admissible"]] or candidates
    best = min(c["pool4"] for c in pool)
    near = [c for c in pool if c["pool4"] <= best + TIE]
    low2 = min(c["pool2"] for c in near)
    return next(c for c in near if c["pool2"] <= low2 + 1e-12)


def sweep(run, kind: str, args, say=print) -> dict:
    """The coordinate search of the rule: every candidate tried and the choice."""
    splits = load_splits(run.data_root(args.data), run.config.data, progress=False)
    train, val = np.asarray(splits["train"]), np.asarray(splits["validate"])
    prior = load_prior(run, kind)
    current = {"temperature": prior.sampling[0], "top_k": prior.sampling[1]}
    axes = [("temperature", args.temperatures), ("top_k", args.top_ks)]
    if hasattr(prior, "steps"):
        current.update(steps=prior.steps, noise=prior.noise)
        axes += [("steps", args.steps), ("noise", args.noises)]
    tried: dict[tuple, dict] = {}

    def score(settings: dict) -> dict:
        key = tuple(sorted(settings.items()))
        if key not in tried:
            tried[key] = evaluate_candidate(run, kind, settings, args, train, val)
            c = tried[key]
            say(
                f"{settings}: pool4 {c['pool4']:.3f} (reference {_num(c['reference_pool4'])}), "
                f"pool2 {c['pool2']:.3f}, diversity gap {c['diversity_gap']:+.3f}, copies "
                f"{c['copies']}, realism {c['realism_ratio']:.3f}"
            )
        return tried[key]

    score(current)
    for name, values in axes:
        for v in values:
            score({**current, name: v})
        best = choose([c for c in tried.values()])
        current = {k: best[k] for k in current}
    chosen = choose(list(tried.values()))
    rule = __doc__[__doc__.index("The rule") : __doc__.index("Writes every")].strip()
    return {"kind": kind, "rule": rule, "candidates": list(tried.values()),
            "chosen": {k: chosen[k] for k in current}, "chosen_scores": chosen}  # fmt: skip


def flags(chosen: dict) -> str:
    """The chosen settings: sampling flags, and MaskGIT's decoding settings by config key."""
    out = f"--temperature {chosen['temperature']:g} --top-k {chosen['top_k']}"
    if "steps" in chosen:
        out += f" prior.maskgit.steps={chosen['steps']} prior.maskgit.noise={chosen['noise']:g}"
    return out


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, sweep, write the JSON, print the choice."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder with a trained prior")
    ap.add_argument("--data", default=None, help="data folder (default: the run's)")
    ap.add_argument("--kind", default=None, help="prior kind (default: the run's)")
    ap.add_argument("--n", type=int, default=100, help="samples per candidate and seed (100)")
    ap.add_argument("--seeds", default="0", help="sampling seeds, comma-separated (0)")
    ap.add_argument("--temperatures", default="0.6,0.8,1.0,1.2")
    ap.add_argument("--top-ks", default="0,64,16")
    ap.add_argument("--steps", default="8,12,16", help="MaskGIT decoding steps")
    ap.add_argument("--noises", default="0,2,4.5", help="MaskGIT choice noise")
    ap.add_argument("--folds", type=int, default=5, help="classifier folds (5)")
    ap.add_argument("--out", default=None, help="(RUN/state/evaluate/sampling_choice.json)")
    args = ap.parse_args(argv)
    args.seeds = [int(v) for v in args.seeds.split(",")]
    args.temperatures = _floats(args.temperatures)
    args.top_ks = [int(v) for v in _floats(args.top_ks)]
    args.steps = [int(v) for v in _floats(args.steps)]
    args.noises = _floats(args.noises)
    run = load_run(args.run)
    kind = pick_kind(run, args.kind)
    result = sweep(run, kind, args, say=lambda line: print(line, file=sys.stderr))
    result["machine"] = machine()
    out = Path(args.out) if args.out else run.dir.state / "evaluate" / "sampling_choice.json"
    atomic_write_text(out, json.dumps(result, indent=1, default=float) + "\n")
    c = result["chosen_scores"]
    print(
        f"chosen ({'admissible' if c['admissible'] else 'NO candidate met the limits'}): "
        f"{flags(result['chosen'])}  pool4 {c['pool4']:.3f} (reference {_num(c['reference_pool4'])}), "
        f"diversity gap {c['diversity_gap']:+.3f}, copies {c['copies']} -> {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
