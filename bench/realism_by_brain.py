"""A prior's realism on new brains, with its sampling temperature chosen on the validation brains.

Phase 1 (choose): for each --temperatures value, --n samples (sampling seed --choose-seed, top-k
all) scored against the VALIDATION brains (what `brainvq evaluate --eval.reference validate`
computes: the same sampling and scoring functions).
Rule, fixed before any number is seen: among the temperatures whose diversity gap (mean pairwise
SSIM of the samples minus that of the reference slices) is within +-0.05, the one whose realism
ratio is closest to 1; if none is within 0.05, the one with the smallest gap (and the table says
so).
Phase 2 (score once): at the chosen temperature, --n samples for each sampling seed in --seeds,
scored against the TEST brains, with a C2ST (samples against the real test slices, folds by
brain, --c2st-pool) where asked. The seeds are sampling seeds of one trained prior.

Per row: realism ratio, diversity samples / real, copies, the share of samples with a near-twin
in training (brainvq.evaluation.realism.near_twins) beside the real slices' share. Samples are
kept in RUN/state/realism_by_brain/ so an interrupted run resumes without sampling again.

    PYTHONPATH=src python bench/realism_by_brain.py --run /work/runs/m17 --kind maskgit
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import add_run_args, append_result, command, load_run_splits, result_block

from brainvq.codes import code_maps
from brainvq.data import discover
from brainvq.evaluation.c2st import c2st
from brainvq.evaluation.evaluate import reference_cache
from brainvq.evaluation.realism import near_twins, score_samples
from brainvq.priors import load_prior
from brainvq.sampling import sample_images

RESULTS = Path(__file__).parent / "results" / "realism_by_brain.md"
GAP = 0.05  # the diversity target, also the choosing rule's
COLUMNS = [
    "reference",
    "temperature",
    "seed",
    "realism ratio",
    "diversity samples / real",
    "copies",
    "near-twin share samples / real",
    "C2ST (pool)",
    "s",
]


def choose(rows: list[dict]) -> tuple[float, str]:
    """The temperature the rule picks from the validation rows, and why (see the docstring)."""
    ok = [r for r in rows if abs(r["diversity_gap"]) <= GAP]
    if ok:
        best = min(ok, key=lambda r: abs(r["realism_ratio"] - 1))
        why = f"realism ratio closest to 1 among those with |diversity gap| <= {GAP}"
    else:
        best = min(rows, key=lambda r: abs(r["diversity_gap"]))
        why = f"no temperature had |diversity gap| <= {GAP}: the smallest gap"
    return best["temperature"], why


def brains(files: list[Path]) -> list[str] | None:
    """The brain (case_NNN) of each slice file; None if any name lacks one."""
    found = [re.search(r"case_\d+", f.name) for f in files]
    return None if any(m is None for m in found) else [m.group(0) for m in found]


def drawn(run, prior, kind: str, n: int, seed: int, temperature: float) -> dict:
    """n samples (codes, images) at this temperature and seed, top-k all; kept on disk."""
    folder = run.dir.state / "realism_by_brain"
    path = folder / f"{kind}-n{n}-t{temperature:g}-s{seed}.npz"
    if path.exists():
        with np.load(path) as z:
            return {"codes": z["codes"], "images": z["images"], "seconds": float(z["seconds"])}
    t0 = time.perf_counter()
    d = sample_images(run, prior, n, seed, run.config.eval.batch_size, temperature, 0, True)
    seconds = time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)
    out = {"codes": d["codes"].numpy(), "images": np.asarray(d["images"]), "seconds": seconds}
    np.savez(path, **out)
    return out


def score(run, arrays, real_codes, d: dict, ref: str) -> dict:
    """Every sample measure against the `ref` split's slices, with the samples' near-twin share."""
    cfg = run.config
    s, per = score_samples(
        d["images"],
        np.asarray(arrays["train"]),
        np.asarray(arrays[ref]),
        d["codes"],
        real_codes[ref],
        cfg.vqvae.codebook_size,
        candidates=cfg.eval.nn_candidates,
        cache_dir=reference_cache(run),
    )
    twins = near_twins(torch.from_numpy(per["neighbours"]))
    if twins is not None:
        s["sample_near_twin_share"] = float((twins[0] > 0).float().mean())
    return s


def row(ref: str, t: float, seed: int, s: dict) -> list:
    twins = (
        f"{s['sample_near_twin_share']:.0%} / {s['real_test_near_twin_share']:.0%}"
        if "sample_near_twin_share" in s and "real_test_near_twin_share" in s
        else "-"
    )
    c = s.get("c2st")
    return [
        ref,
        f"{t:g}",
        seed,
        f"{s['realism_ratio']:.3f}",
        f"{s['diversity_samples']:.3f} / {s['diversity_real_test']:.3f}",
        s["copies"],
        twins,
        f"{c['accuracy']:.2f} +- {c['accuracy_std']:.2f} ({c['pool']})" if c else "-",
        f"{s['seconds']:.0f}",
    ]


def spread(rows: list[dict], key: str) -> str:
    v = np.array([r[key] for r in rows], dtype=float)
    return f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def verdict(rows: list[dict], low: float) -> str:
    """Each of the issue's targets, met or not, over the test rows."""
    ratios = [r["realism_ratio"] for r in rows]
    gaps = [abs(r["diversity_gap"]) for r in rows]
    twins = [r.get("sample_near_twin_share", float("nan")) for r in rows]
    real_twins = rows[0].get("real_test_near_twin_share", float("nan"))
    checks = [
        (f"realism ratio in [{low}, 1.05] (every seed)", all(low <= x <= 1.05 for x in ratios)),
        (f"|diversity gap| <= {GAP} (every seed)", all(g <= GAP for g in gaps)),
        ("0 copies (every seed)", all(r["copies"] == 0 for r in rows)),
        ("sample near-twin share <= real test's (every seed)", all(t <= real_twins for t in twins)),
    ]
    return "\n".join(f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in checks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--kind", default="maskgit", help="which prior of the run (maskgit)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.6, 0.8, 1.0])
    ap.add_argument("--choose-seed", type=int, default=0, help="sampling seed of phase 1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="phase 2's seeds")
    ap.add_argument("-n", type=int, default=100, help="samples per row (100)")
    ap.add_argument("--c2st-pool", type=int, default=2, help="C2ST pooling on test rows (0: none)")
    ap.add_argument("--low", type=float, default=0.95, help="realism target's low end (0.95)")
    ap.add_argument("--budget", default="", help="the prior's training budget, for the heading")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_run_splits(args)
    if loaded is None:
        return
    run, arrays = loaded
    prior = load_prior(run, args.kind)
    real_codes = code_maps(run, args.data)
    test_brains = brains(discover(args.data, run.config.data).files["test"])

    t_start = time.perf_counter()
    val_rows = []
    for t in args.temperatures:
        d = drawn(run, prior, args.kind, args.n, args.choose_seed, t)
        s = {**score(run, arrays, real_codes, d, "validate"), "temperature": t}
        s["seconds"] = d["seconds"]
        val_rows.append(s)
        print(f"validate t={t:g}: {row('validate', t, args.choose_seed, s)}", file=sys.stderr)
    chosen, why = choose(val_rows)
    print(f"chosen temperature {chosen:g}: {why}", file=sys.stderr)

    test_rows = []
    for seed in args.seeds:
        d = drawn(run, prior, args.kind, args.n, seed, chosen)
        s = {**score(run, arrays, real_codes, d, "test"), "temperature": chosen}
        s["seconds"] = d["seconds"]
        if args.c2st_pool:
            s["c2st"] = c2st(
                arrays["test"], d["images"], pool=args.c2st_pool, real_groups=test_brains
            )
        test_rows.append(s)
        print(f"test seed {seed}: {row('test', chosen, seed, s)}", file=sys.stderr)

    raw = run.dir.state / "realism_by_brain" / f"{args.kind}-scores.json"
    raw.write_text(json.dumps({"validate": val_rows, "test": test_rows}, indent=1, default=str))
    rows = [row("validate", r["temperature"], args.choose_seed, r) for r in val_rows]
    rows += [
        row("test", r["temperature"], seed, r)
        for seed, r in zip(args.seeds, test_rows, strict=True)
    ]
    mean = ["test mean +- std", f"{chosen:g}", "/".join(map(str, args.seeds))]
    mean += [spread(test_rows, "realism_ratio"), spread(test_rows, "diversity_gap") + " (gap)"]
    mean += [
        spread(test_rows, "copies"),
        spread(test_rows, "sample_near_twin_share") + " (samples)",
        "",
        "",
    ]
    rows.append(mean)
    budget = f" ({args.budget})" if args.budget else ""
    text = (
        f"\nPrior: {args.kind}{budget} of run {args.run}; data {args.data} "
        f"(train {len(arrays['train'])} slices, validate {len(arrays['validate'])} of 2 brains, "
        f"test {len(arrays['test'])} of 4 brains). {args.n} samples a row, top-k all.\n"
        f"Chosen on the validation brains: temperature {chosen:g} ({why}). The test brains were "
        f"then scored at it only, with sampling seeds {args.seeds} of ONE trained prior (training "
        "seeds not varied). 's' = seconds to sample the row. C2ST: held-out balanced accuracy of "
        "samples against the real test slices, folds by brain (0.5 = indistinguishable).\n"
        f"Wall time of this command: {time.perf_counter() - t_start:.0f} s (samples already on "
        "disk are reused, their 's' is from when they were drawn).\n\n"
        f"Targets over the test rows:\n{verdict(test_rows, args.low)}\n\n"
        f"`PYTHONPATH=src {command()}`\n"
    )
    heading = f"{args.kind}: temperature chosen on validation brains, test brains scored once"
    append_result(RESULTS, "Realism on new brains", result_block(heading, text, COLUMNS, rows))


if __name__ == "__main__":
    main()
