"""Benchmark: anomaly maps against synthetic lesions with ground truth.

Usage: python bench/anomaly.py [--run runs/anomaly] [--data ../shared/data/brain-mri-128]
           [--phase select|test|both] [--variants NAME ...] [--radii 8] [--use NAME]
           [--val-every 1] [--test-every 1]

The lesion set (fixed before any measurement): every real slice of the validation and test
brains, untouched, and once with one lesion of each radius in RADII and each contrast in
CONTRASTS (brainvq.applications.lesions.insert_lesion: a Gaussian-edged ellipse inside the brain
mask, in tissue, +-c of the slice's brain intensity range), each drawn from its own seed.

Measured, inside each slice's brain mask (brainvq.applications.lesions.brain_mask of the clean
slice), for each way of making maps and for the baseline every paper compares with, the
reconstruction residual |x - VQVAE(x)| (smoothed like the maps):
- slice level: AUROC of the slice scores, lesioned against clean, per radius and contrast;
- pixel level: average precision (AUPRC) and the best Dice over all thresholds, on the lesioned
  slices; and the Dice at the threshold that was best on the validation brains.

``--phase select`` measures the VARIANTS on the validation brains only (which way of making maps
and which slice score to default to); ``--phase test`` measures the library's default settings for
the run (brainvq.applications.anomaly.settings_for: transformer detection and healing, or MaskGIT's
where the run has no transformer) or the variant ``--use`` names, and the baseline, on the test
brains, with the Dice threshold and slice score chosen on the validation brains. ``--val-every N``
and ``--test-every N`` keep every Nth slice of a split (a CPU budget: healing with MaskGIT at
128x128 takes seconds a slice on a shared core). Healing outputs are kept in
RUN/anomaly/bench/ so a rerun only measures. Appends the tables, with the machine and the
command, to bench/results/anomaly.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import add_run_args, append_result, load_run_splits, result_block

from brainvq.applications.anomaly import (
    AnomalySettings,
    anomaly_map,
    gaussian_blur,
    heal,
    load_priors,
    settings_for,
    slice_scores,
)
from brainvq.applications.lesions import (
    auroc,
    average_precision,
    best_dice,
    brain_mask,
    dice,
    insert_lesion,
)
from brainvq.priors import trained_kinds

RESULTS = Path(__file__).parent / "results" / "anomaly.md"
RADII = (4, 8, 12)
CONTRASTS = (0.15, -0.15, 0.3, -0.3, 0.5, -0.5)
SPLIT_SEED = {"validate": 1, "test": 2}
TOP_SHARES = (0.001, 0.005, 0.01, 0.05, 1.0)  # slice score candidates: mean of the top share
VARIANTS = {
    "T/T p<0.001": AnomalySettings(threshold=0.001),
    "T/T p<0.005": AnomalySettings(threshold=0.005),
    "T/T p<0.01": AnomalySettings(threshold=0.01),
    "T/T p<0.05": AnomalySettings(threshold=0.05),
    "T/T p<0.01 argmax": AnomalySettings(threshold=0.01, temperature=0.0),
    "T/M p<0.01": AnomalySettings(threshold=0.01, heal="maskgit"),
    "M/M p<0.01": AnomalySettings(threshold=0.01, detect="maskgit", heal="maskgit"),
    "M/M p<0.001": AnomalySettings(threshold=0.001, detect="maskgit", heal="maskgit"),
    "M/M p<0.01 block 2": AnomalySettings(
        threshold=0.01, detect="maskgit", heal="maskgit", maskgit_block=2
    ),
}


def lesion_set(images: np.ndarray, split: str, seed: int = 0) -> dict:
    """The lesioned copies of ``images`` (N, S, S) float in [0, 1]: {(radius, contrast):
    (lesioned (N, S, S) float32, masks (N, S, S) bool)}; lesion i of a condition comes from the
    seed (seed, split, condition, i), so each slice's lesion is the same in every run."""
    out = {}
    for j, (radius, contrast) in enumerate((r, c) for r in RADII for c in CONTRASTS):
        made = [
            insert_lesion(
                x, radius, contrast, np.random.default_rng([seed, SPLIT_SEED[split], j, i])
            )
            for i, x in enumerate(images)
        ]
        out[radius, contrast] = (
            np.stack([m[0] for m in made]).astype(np.float32),
            np.stack([m[1] for m in made]),
        )
    return out


def healed_outputs(run, priors, images: np.ndarray, settings, cache: Path, bs: int = 64) -> dict:
    """heal() of every image (N, S, S), kept in ``cache`` (.npz) under a key of the settings and
    the images: "healed" and "recon" (N, S, S) float16, "redrawn" (N, h, w) bool, "log_p" (N, h, w)."""
    key = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
    key.update(np.ascontiguousarray(images).tobytes())
    path = cache / f"{key.hexdigest()[:20]}.npz"
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    parts = []
    for i in range(0, len(images), bs):
        x = torch.from_numpy(images[i : i + bs])[:, None]
        o = heal(run, priors, x, settings)
        parts.append(
            {
                "healed": o["healed"][:, 0].numpy().astype(np.float16),
                "recon": o["recon"][:, 0].numpy().astype(np.float16),
                "redrawn": o["redrawn"].numpy(),
                "log_p": o["log_p"].numpy().astype(np.float32),
            }
        )
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def maps_of(images: np.ndarray, out: dict, settings, method: str) -> np.ndarray:
    """The maps (N, S, S) of one method: "healing" (the settings' anomaly map) or "residual"
    (|x - recon| smoothed by the same sigma)."""
    x = torch.from_numpy(images)[:, None]
    if method == "residual":
        r = torch.from_numpy(out["recon"].astype(np.float32))[:, None]
        return gaussian_blur((x - r).abs(), settings.sigma)[:, 0].numpy()
    h = torch.from_numpy(out["healed"].astype(np.float32))[:, None]
    return anomaly_map(x, h, torch.from_numpy(out["redrawn"]), settings.sigma).numpy()


def measure(run, priors, split: str, clean: np.ndarray, settings, cache: Path, radii) -> dict:
    """For one split and one settings: {method: {"clean": maps, (r, c): (maps, masks)}} and the
    brain masks, the maps restricted to the brain."""
    brains = np.stack([brain_mask(x) for x in clean])
    lesions = {k: v for k, v in lesion_set(clean, split).items() if k[0] in radii}
    result = {"healing": {}, "residual": {}}
    t0 = time.perf_counter()
    for cond, imgs in [("clean", clean)] + [(k, v[0]) for k, v in lesions.items()]:
        out = healed_outputs(run, priors, imgs, settings, cache)
        for method in result:
            maps = maps_of(imgs, out, settings, method) * brains
            result[method][cond] = maps if cond == "clean" else (maps, lesions[cond][1])
    print(f"  {split}: {len(lesions) + 1} sets healed/loaded in {time.perf_counter() - t0:.0f}s")
    return {"maps": result, "brains": brains}


def scores_by_share(maps: np.ndarray) -> dict:
    t = torch.from_numpy(np.ascontiguousarray(maps))
    return {s: slice_scores(t, s).numpy() for s in TOP_SHARES}


def tables(measured: dict, share: dict | None = None, thresholds: dict | None = None) -> dict:
    """Per method: AUROC per condition for every slice score, pixel AUPRC and best Dice per
    condition and pooled, and (with thresholds) Dice at the given threshold."""
    out = {}
    brains = measured["brains"]
    for method, sets in measured["maps"].items():
        clean = scores_by_share(sets["clean"])
        res = {"auroc": {}, "auprc": {}, "best_dice": {}, "dice_at": {}}
        pooled_s, pooled_y = [], []
        for cond, (maps, masks) in ((k, v) for k, v in sets.items() if k != "clean"):
            les = scores_by_share(maps)
            res["auroc"][cond] = {
                s: auroc(
                    np.r_[clean[s], les[s]], np.r_[np.zeros(len(clean[s])), np.ones(len(les[s]))]
                )
                for s in TOP_SHARES
            }
            vals, truth = maps[brains], masks[brains]
            res["auprc"][cond] = average_precision(vals, truth)
            res["best_dice"][cond] = best_dice(vals, truth)
            if thresholds:
                res["dice_at"][cond] = dice(vals >= thresholds[method], truth)
            pooled_s.append(vals)
            pooled_y.append(truth)
        vals, truth = np.concatenate(pooled_s), np.concatenate(pooled_y)
        res["auprc"]["all"] = average_precision(vals, truth)
        res["best_dice"]["all"] = best_dice(vals, truth)
        if thresholds:
            res["dice_at"]["all"] = dice(vals >= thresholds[method], truth)
        out[method] = res
    return out


def _f(v: float) -> str:
    return f"{v:.3f}"


def select(run, priors_all, arrays, args, cache: Path) -> None:
    """Every variant on the validation brains: which maps and slice score to default to."""
    clean = arrays["validate"]
    rows, detail = [], {}
    for name in args.variants:
        st = VARIANTS[name]
        if not st.priors() <= set(priors_all):
            print(f"skip {name}: the run has no {st.priors() - set(priors_all)} prior")
            continue
        priors = {k: priors_all[k] for k in st.priors()}
        t0 = time.perf_counter()
        m = measure(run, priors, "validate", clean, st, cache, args.radii)
        t = tables(m)
        detail[name] = t
        for method in ("healing", "residual"):
            res = t[method]
            conds = sorted(res["auroc"])
            mean_auroc = {s: np.mean([res["auroc"][c][s] for c in conds]) for s in TOP_SHARES}
            best_share = max(mean_auroc, key=mean_auroc.get)
            big = [c for c in conds if c[0] >= 8]
            low = min(res["auroc"][c][best_share] for c in big) if big else float("nan")
            rows.append(
                [
                    name if method == "healing" else f"{name}: residual",
                    " ".join(f"{s:g}:{mean_auroc[s]:.3f}" for s in TOP_SHARES),
                    f"{best_share:g}",
                    _f(low),
                    _f(res["auprc"]["all"]),
                    _f(res["best_dice"]["all"][0]),
                ]
            )
        print(f"{name}: {time.perf_counter() - t0:.0f}s", rows[-2], flush=True)
    cols = [
        "maps",
        "mean slice AUROC by score (top share: AUROC)",
        "best share",
        "min AUROC r>=8",
        "pixel AUPRC",
        "best Dice",
    ]
    text = (
        f"\nValidation brains only ({len(clean)} slices), radii {list(args.radii)}, contrasts "
        f"{list(CONTRASTS)}. T/T: transformer detects and heals (raster order); T/M: transformer "
        "detects, MaskGIT fills; M/M: MaskGIT scores each code given its neighbours and fills. "
        "Residual rows: |x - VQVAE(x)| of the same run, smoothed alike.\n\n"
        f"Command: `python bench/anomaly.py --phase select --run {args.run} --radii "
        f"{' '.join(map(str, args.radii))} --val-every {args.val_every} --variants "
        f"{' '.join(repr(v) for v in args.variants)}`\n"
    )
    append_result(
        RESULTS,
        "Anomaly maps against synthetic lesions",
        result_block("Selection on the validation brains", text, cols, rows),
    )


def test_phase(run, priors, arrays, args, cache: Path) -> None:
    """The default settings and the baseline on the test brains, thresholds from validation."""
    st = VARIANTS[args.use] if args.use else settings_for(None, run.dir)
    priors = {k: priors[k] for k in st.priors()}
    val = measure(run, priors, "validate", arrays["validate"], st, cache, args.radii)
    tv = tables(val)
    thresholds = {m: tv[m]["best_dice"]["all"][1] for m in tv}
    shares = {}
    for m in tv:
        conds = sorted(tv[m]["auroc"])
        mean_auroc = {s: np.mean([tv[m]["auroc"][c][s] for c in conds]) for s in TOP_SHARES}
        shares[m] = max(mean_auroc, key=mean_auroc.get)
    test = measure(run, priors, "test", arrays["test"], st, cache, args.radii)
    tt = tables(test, thresholds=thresholds)
    rows = []
    for cond in sorted(tt["healing"]["auroc"], key=lambda c: (c[0], abs(c[1]), -c[1])):
        r, c = cond
        row = [r, f"{c:+g}"]
        for m in ("healing", "residual"):
            res = tt[m]
            row += [
                _f(res["auroc"][cond][shares[m]]),
                _f(res["auprc"][cond]),
                _f(res["dice_at"][cond]),
                _f(res["best_dice"][cond][0]),
            ]
        rows.append(row)
    row = ["all", ""]
    for m in ("healing", "residual"):
        res = tt[m]
        mean_auroc = np.mean([res["auroc"][c][shares[m]] for c in res["auroc"]])
        row += [
            _f(mean_auroc) + " (mean)",
            _f(res["auprc"]["all"]),
            _f(res["dice_at"]["all"]),
            _f(res["best_dice"]["all"][0]),
        ]
    rows.append(row)
    cols = ["radius px", "contrast"]
    for m in ("healing", "residual"):
        cols += [f"{m} slice AUROC", f"{m} AUPRC", f"{m} Dice@val", f"{m} best Dice"]
    n = len(arrays["test"])
    text = (
        f"\nTest brains: {n} real slices (every {args.test_every}th) clean and {n} with one "
        f"lesion per condition; thresholds from {len(arrays['validate'])} validation slices "
        f"(every {args.val_every}th). Healing: "
        f"{json.dumps(dataclasses.asdict(st))}. Slice score: mean of the map's top share of "
        f"pixels, the share chosen on the validation brains (healing {shares['healing']:g}, "
        f"residual {shares['residual']:g}); Dice@val: at the threshold best on the validation "
        f"brains' lesions (healing {thresholds['healing']:.4f}, residual "
        f"{thresholds['residual']:.4f}). Pixel measures inside the brain mask, on the lesioned "
        "slices; 'all' pools every condition.\n\n"
        f"Command: `python bench/anomaly.py --phase test --run {args.run} --radii "
        f"{' '.join(map(str, args.radii))} --val-every {args.val_every} --test-every "
        f"{args.test_every}" + (f" --use '{args.use}'`\n" if args.use else "`\n")
    )
    append_result(
        RESULTS,
        "Anomaly maps against synthetic lesions",
        result_block("Test brains, default settings", text, cols, rows),
    )
    (cache / "test_tables.json").write_text(
        json.dumps({"thresholds": thresholds, "shares": shares}, default=str)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--phase", choices=("select", "test", "both"), default="both")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--radii", nargs="+", type=int, default=list(RADII))
    ap.add_argument("--use", choices=list(VARIANTS), help="test phase: this variant")
    ap.add_argument("--val-every", type=int, default=1, help="keep every Nth validation slice")
    ap.add_argument("--test-every", type=int, default=1, help="keep every Nth test slice")
    args = ap.parse_args()
    loaded = load_run_splits(args)
    if loaded is None:
        return
    run, arrays = loaded
    every = {"validate": args.val_every, "test": args.test_every}
    arrays = {k: arrays[k][:: every[k]].astype(np.float32) / 255 for k in every}
    torch.manual_seed(0)
    have = [k for k in trained_kinds(run.dir) if k in ("transformer", "maskgit")]
    priors = load_priors(run, AnomalySettings(detect=have[0], heal=have[-1]))
    cache = run.dir.path / "anomaly" / "bench"
    if args.phase in ("select", "both"):
        select(run, priors, arrays, args, cache)
    if args.phase in ("test", "both"):
        test_phase(run, priors, arrays, args, cache)


if __name__ == "__main__":
    main()
