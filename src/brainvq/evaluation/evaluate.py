"""Evaluate a run: what its splits hold (subjects per split, subjects in more than one split, real
test slices with near-twins in training), the VQ-VAE on the test split (reconstruction SSIM by
skimage's definition, PSNR, codebook use) and each prior's samples against the real slices
(brainvq.evaluation.realism); for both, the classifier two-sample test against the real test
slices (brainvq.evaluation.c2st, full resolution and 2x2-averaged); metrics.json and figures.

    from brainvq.evaluation.evaluate import evaluate_run
    result = evaluate_run("runs/demo", say=print)     # or `brainvq evaluate --run runs/demo`
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from brainvq.codes import code_maps, encode_images
from brainvq.config import Config, check_scope
from brainvq.data import load_data
from brainvq.data.subjects import describe as describe_subjects
from brainvq.data.subjects import warn_leaks, warn_once
from brainvq.evaluation.conditioning import conditioning_fidelity, conditioning_rows
from brainvq.evaluation.figures import (
    code_map_figure,
    codebook_figure,
    curves_figure,
    nearest_pair_figure,
    nn_ssim_histogram_figure,
    read_csv_log,
    recon_figure,
    rows_figure,
)
from brainvq.evaluation.manifest import reference_cache, write_manifest
from brainvq.evaluation.ms_ssim import ms_ssim_diversity
from brainvq.evaluation.prior_test import (
    PRIOR_POOLS,
    beside_recons_figure,
    prior_test_rows,
    prior_test_words,
    prior_two_sample,
)
from brainvq.evaluation.realism import real_reference, realism_ratio, score_samples
from brainvq.evaluation.two_sample import c2st_rows, c2st_scores, c2st_words
from brainvq.evaluation.verdict import findings
from brainvq.metrics import code_histogram, codebook_stats, psnr, ssim_reference, summarize
from brainvq.priors import load_prior, trained_kinds
from brainvq.progress import Progress
from brainvq.runs import Run, RunDir, load_run
from brainvq.sampling import image_grid, sample_images
from brainvq.training.budget import read_finished

GRID = 16  # slices in each of the report's side-by-side grids (samples, real test slices)
EVAL_SECTIONS = ("eval",)  # what evaluate takes as overrides: how it measures, not what


@torch.no_grad()
def reconstruct_all(run: Run, images: np.ndarray, batch_size: int = 64):
    """Codes (N, h, w) and reconstructions (N, S, S) float32 of uint8 slices."""
    codes = torch.from_numpy(encode_images(run, images, batch_size))
    return codes, run.vqvae.decode(codes, batch_size)[:, 0].numpy()


NEAR_TWIN_WARNING = 0.5  # warn when more real test slices than this have near-twins in training
NEAR_TWIN_MEANS = (
    "a near-twin is a training slice far closer to a test slice than the rest, as a "
    "neighbouring slice of the same brain is"
)


def near_twin_warning(data: dict) -> str | None:
    """The warning a high share of real test slices with near-twins deserves, or None."""
    share = data.get("real_test_near_twin_share")
    if share is None or share <= NEAR_TWIN_WARNING or data.get("one_brain"):
        return None
    return (
        f"{share:.0%} of the real test slices have a near-twin in the training split "
        f"({NEAR_TWIN_MEANS}): the splits likely share brains and held-out scores read too high; "
        "keep each subject in one split (data.subject_pattern names the subjects)"
    )


def evaluate_data(
    run_path: str,
    data: str | None = None,
    overrides: list[str] | None = None,
    progress: bool = False,
) -> dict:
    """What the run's splits hold: subjects per split, subjects in more than one split (warned),
    and the share of real test slices with near-twins in training (warned when high); the
    `data` section of metrics.json."""
    run = load_for_evaluation(run_path, overrides)
    cfg = run.config
    splits, arrays = load_data(run.data_root(data), cfg.data, progress=False)
    result = {"source": splits.source, **splits.subject_summary()}
    train, test = np.asarray(arrays["train"]), np.asarray(arrays["test"])
    stats = real_reference(train, test, cfg.eval.nn_candidates, reference_cache(run), progress)[0]
    if "real_test_near_twin_share" in stats:
        result["real_test_near_twin_share"] = stats["real_test_near_twin_share"]
    warn_leaks(result)
    twins = near_twin_warning(result)
    if twins:
        warn_once(twins)
    run.dir.update_metrics("data", result)
    return result


def format_data(result: dict) -> str:
    """The subjects line, and the real test slices' near-twin share with what it means."""
    lines = [describe_subjects(result)]
    if "real_test_near_twin_share" in result:
        lines.append(
            f"real test slices with a near-twin in training: "
            f"{result['real_test_near_twin_share']:.0%} ({NEAR_TWIN_MEANS})"
        )
    return "\n".join(lines)


def load_for_evaluation(run_path: str | Path, overrides: list[str] | None = None) -> Run:
    """The run, with ``overrides`` (``eval.KEY=VALUE`` strings, the only section evaluate uses
    from the command line) applied to its config for this evaluation; config.toml is unchanged."""
    overrides = list(overrides or [])
    check_scope(overrides, EVAL_SECTIONS, "evaluate")
    run = load_run(run_path)
    run.config.override(overrides)
    return run


def evaluate_vqvae(
    run_path: str,
    data: str | None = None,
    overrides: list[str] | None = None,
    progress: bool = False,
) -> dict:
    """Score the run's VQ-VAE on the test split, write figures and the `vqvae` metrics section
    (``overrides``: eval.KEY=VALUE for this evaluation; ``progress``: show the long phases)."""
    run = load_for_evaluation(run_path, overrides)
    cfg = run.config
    splits, arrays = load_data(run.data_root(data), cfg.data, progress=progress)
    test = np.asarray(arrays["test"])
    x = test.astype(np.float32) / 255.0
    codes, recons = reconstruct_all(run, test, cfg.eval.batch_size)
    with Progress(len(x), "scoring test reconstructions", "slice", progress) as bar:
        scores = []
        for i in range(len(x)):
            scores.append(ssim_reference(x[i], recons[i]))
            bar.update()
    scores = np.array(scores)
    p = psnr(torch.from_numpy(x)[:, None], torch.from_numpy(recons)[:, None]).numpy()
    book = codebook_stats(codes, cfg.vqvae.codebook_size)
    result = {
        "n_test": len(test),
        "image_size": cfg.data.image_size,
        "ssim": summarize(scores),
        "psnr": summarize(p),
        **book,
        "codebook_size": cfg.vqvae.codebook_size,
        "test_positions": int(codes.numel()),  # codes the test split could use at most
    }
    train = np.asarray(arrays["train"])
    if len(train):
        result["recon_realism_ratio"] = realism_ratio(
            recons, test, train, cfg.eval.nn_candidates, reference_cache(run), progress
        )
    two_sample = c2st_scores(test, recons, splits, cfg.eval, paired=True, progress=progress)
    if two_sample:
        result["c2st"] = two_sample
    figs = run.dir.figures
    recon_figure(x, recons, scores, figs / "reconstructions.png")
    real_grid(x, splits.slice_levels("test"), figs / "real_test_slices.png")
    log = read_csv_log(run.dir.logs / "vqvae" / "metrics.csv")
    if log:
        curves_figure(log, figs / "vqvae_curves.png", "VQ-VAE training")
    counts = code_histogram(codes, cfg.vqvae.codebook_size).numpy()
    codebook_figure(counts, figs / "codebook_usage.png", "Codebook usage on the test split")
    run.dir.update_metrics("vqvae", result)
    return result


def real_grid(test: np.ndarray, levels: list, path: Path, n: int = GRID) -> Path:
    """Up to n real test slices, (N, S, S) in [0, 1], evenly spread in axial level where the
    levels are known, tiled like the samples' grid (4 columns)."""
    order = np.argsort([-1 if lv is None else lv for lv in levels], kind="stable")
    pick = order[np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int)]
    return image_grid(test[pick], path, ncol=4)


def _table(rows: list[tuple[str, str]]) -> str:
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


def format_table(result: dict) -> str:
    """A short plain-text table of the VQ-VAE metrics."""
    s, p = result["ssim"], result["psnr"]
    rows = [
        ("test slices", f"{result['n_test']} at {result['image_size']}x{result['image_size']}"),
        ("SSIM mean +- std", f"{s['mean']:.4f} +- {s['std']:.4f}"),
        ("SSIM min / max", f"{s['min']:.4f} / {s['max']:.4f}"),
        ("PSNR mean (dB)", f"{p['mean']:.2f}"),
        ("codes used", f"{result['codes_used']} ({result['codebook_usage']:.1%})"),
        ("perplexity", f"{result['perplexity']:.1f}"),
    ]
    if "recon_realism_ratio" in result:
        ratio = result["recon_realism_ratio"]
        rows.append(("realism of recons", f"{ratio:.3f} (samples as good as real code maps)"))
    return _table(rows + c2st_rows(result.get("c2st"))) + c2st_words(result.get("c2st"), "recons")


def evaluate_samples(
    run_path: str,
    kind: str = "dcgan",
    data: str | None = None,
    n: int | None = None,
    seed: int | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    overrides: list[str] | None = None,
    progress: bool = False,
    drawn: dict | None = None,
) -> dict:
    """Sample from the run's prior and score the samples against real slices; write figures.

    temperature / top_k default to those in the prior's own config (see brainvq.priors);
    overrides and progress as in evaluate_vqvae. ``drawn``: samples already drawn by
    brainvq.sampling.sample_run, scored instead of drawing new ones (n, seed, temperature and
    top_k are then theirs); their manifest.csv is written beside their PNGs."""
    run = load_for_evaluation(run_path, overrides)
    cfg = run.config
    root = run.data_root(data)
    prior = load_prior(run, kind)
    if drawn is None:
        n = n or cfg.eval.n_samples
        seed = cfg.eval.seed if seed is None else seed
        drawn = sample_images(
            run, prior, n, seed, cfg.eval.batch_size, temperature, top_k, progress
        )
    n, seed = len(drawn["images"]), drawn.get("seed", seed)
    splits, arrays = load_data(root, cfg.data, progress=progress)
    ref = cfg.eval.reference  # the split whose real slices the samples are scored against
    real_codes = code_maps(run, root, progress=progress)[ref]
    train, real = np.asarray(arrays["train"]), np.asarray(arrays[ref])
    scores, per = score_samples(
        drawn["images"],
        train,
        real,
        drawn["codes"].numpy(),
        real_codes,
        cfg.vqvae.codebook_size,
        candidates=cfg.eval.nn_candidates,
        cache_dir=reference_cache(run),
        progress=progress,
    )
    scores["samples_per_second"] = drawn["samples_per_second"]
    scores["reference"] = ref  # the real_test_* values are of this split's slices
    scores["seed"] = seed
    scores["decoder"] = drawn["decoder"]
    if kind != "dcgan" or prior.design == "gumbel":
        scores["temperature"], scores["top_k"] = drawn["temperature"], drawn["top_k"]
    if prior.has_likelihood:  # autoregressive: how well it predicts unseen real code maps
        bits = prior.bits_per_code(torch.from_numpy(real_codes)).numpy()
        scores["test_bits_per_code"] = float(bits.mean())
    scores.update(ms_ssim_diversity(drawn["images"], real))
    two_sample = c2st_scores(real, drawn["images"], splits, cfg.eval, progress=progress, split=ref)
    if two_sample:  # against raw real slices: bounded by the decoder's texture
        scores["c2st"] = two_sample
        ev = cfg.eval
        tests = prior_two_sample(run, drawn["images"], kind, ref, PRIOR_POOLS, ev.c2st_folds,
                                 ev.seed, root, progress)  # fmt: skip
        scores.update(tests)
    conditioning = conditioning_fidelity(run, prior, root, cfg.eval, progress)
    if conditioning:  # a prior trained with prior.conditions: are the asked values met?
        scores["conditioning"] = conditioning
    if drawn.get("out") is not None:
        levels = splits.slice_levels("train")
        copy = per["nn_ssim"] > scores["copy_threshold"]
        near = {"nn_ssim": per["nn_ssim"], "copy": copy}
        near["level"] = [levels[i] for i in per["nearest"]]
        scores["manifest"] = str(write_manifest(drawn["out"], {**drawn, "seed": seed}, near))
    figs = run.dir.figures
    best = int(np.argmax(per["nn_ssim"]))
    nearest_pair_figure(
        drawn["images"][best],
        train[per["nearest"][best]] / 255.0,
        float(per["nn_ssim"][best]),
        figs / f"{kind}_best_vs_nearest.png",
        f"the best of {n} {kind} samples",
    )
    beside = figs / f"{kind}_beside_recons.png"
    beside_recons_figure(run, kind, drawn, per["nearest"], splits, ref, beside, root)
    image_grid(drawn["images"][:64], figs / f"{kind}_samples.png")
    image_grid(drawn["images"][:GRID], figs / f"{kind}_sample_grid.png", ncol=4)
    top = np.argsort(per["nn_ssim"])[::-1][:8]  # the 8 samples closest to a training slice
    rows_figure(
        [
            ("samples", drawn["images"][top]),
            ("nearest\ntraining", train[per["nearest"][top]] / 255),
        ],
        figs / f"{kind}_nearest_pairs.png",
        f"The {len(top)} {kind} samples closest to a training slice, above that slice",
        [f"SSIM {v:.2f}" for v in per["nn_ssim"][top]],
    )
    nn_ssim_histogram_figure(
        per["nn_ssim"],
        per["real_nn_ssim"],
        scores["copy_threshold"],
        figs / f"{kind}_nn_ssim.png",
        f"{kind}: realism ratio {scores['realism_ratio']:.3f}",
    )
    # what realism 1 means on this data: real test slices above their nearest training slices
    real_pick = np.linspace(0, len(per["real_nn_ssim"]) - 1, min(8, len(per["real_nn_ssim"])))
    real_pick = real_pick.round().astype(int)
    rows_figure(
        [
            (f"real {ref}", real[real_pick] / 255.0),
            ("nearest\ntraining", train[per["real_nearest"][real_pick]] / 255.0),
        ],
        figs / "real_nearest_pairs.png",
        f"Real {ref} slices above their nearest training slices: what a realism ratio of 1 asks",
        [f"SSIM {v:.2f}" for v in per["real_nn_ssim"][real_pick]],
    )
    code_map_figure(
        drawn["codes"][best].numpy(),
        drawn["images"][best],
        figs / f"{kind}_code_map.png",
        cfg.vqvae.codebook_size,
    )
    log = read_csv_log(run.dir.logs / f"prior-{kind}" / "metrics.csv")
    if log:
        curves_figure(log, figs / f"prior_{kind}_curves.png", f"{kind} prior training")
    run.dir.update_metrics(f"samples-{kind}", scores)
    return scores


def _sampling(s: dict) -> str:
    out = ""
    if "temperature" in s:
        out += f", temperature {s['temperature']:g}, top-k {s['top_k'] or 'all'}"
    if s.get("decoder") == "tuned":
        out += ", tuned decoder"
    return out


def format_sample_table(s: dict, kind: str) -> str:
    """A short plain-text table of the sample metrics ("real X": the reference split's slices)."""
    real = f"real {s.get('reference', 'test')}"
    rows = [
        (f"{kind} samples", f"{s['n_samples']} (seed {s['seed']}{_sampling(s)})"),
        ("scored against", f"the {s.get('reference', 'test')} split's slices"),
        ("NN-SSIM mean / max", f"{s['nn_ssim_mean']:.4f} / {s['nn_ssim_max']:.4f}"),
        ("share NN-SSIM > 0.6", f"{s['share_over_0.6']:.0%}"),
        (f"{real} NN-SSIM", f"{s['real_test_nn_ssim_mean']:.4f}"),
    ]
    if "share_in_real_range" in s:
        rows.append(
            (
                "share >= lowest real NN-SSIM",
                f"{s['share_in_real_range']:.0%} (lowest {s['real_test_nn_ssim_min']:.4f})",
            )
        )
    rows.append(("realism ratio", f"{s['realism_ratio']:.3f}"))
    rows += [
        (
            f"diversity samples/{real}",
            f"{s['diversity_samples']:.4f} / {s['diversity_real_test']:.4f}",
        ),
        ("copies", f"{s['copies']} (threshold {s['copy_threshold']:.4f})"),
        ("code-histogram distance", f"{s.get('code_hist_distance', float('nan')):.4f}"),
        ("distinct codes in samples", f"{s.get('sample_codes_used', 0)}"),
        ("samples/second", f"{s['samples_per_second']:.1f}"),
    ]
    if "test_bits_per_code" in s:
        rows.append(("bits/code on test maps", f"{s['test_bits_per_code']:.3f}"))
    if "ms_ssim_diversity_samples" in s:
        ms = f"{s['ms_ssim_diversity_samples']:.4f} / {s['ms_ssim_diversity_real_test']:.4f}"
        rows.append((f"MS-SSIM diversity samples/{real}", f"{ms} ({s['ms_ssim_scales']})"))
    rows += prior_test_rows(s) + c2st_rows(s.get("c2st")) + conditioning_rows(s.get("conditioning"))
    return _table(rows) + c2st_words(s.get("c2st"), "samples") + prior_test_words(s)


def stages_finished(run: RunDir) -> dict:
    """{stage: how it ended} of the run's finished training stages (RUN/state/*/finished.json)."""
    stages = [p.parent.name for p in sorted(run.state.glob("*/finished.json"))]
    return {stage: read_finished(run, stage) for stage in stages}


def evaluate_run(
    run_path: str | Path,
    data: str | None = None,
    kind: str | None = None,
    n: int | None = None,
    seed: int | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    say=None,
    overrides: list[str] | None = None,
    progress: bool = False,
    drawn: dict | None = None,
) -> dict:
    """What `brainvq evaluate` does: the data's section (subjects, leaks, near-twins), the
    VQ-VAE's, then the samples of ``kind`` (default: every prior the run holds); ``say(text)``, if
    given, gets each table as it is done, then one line per warning (brainvq.evaluation.verdict).
    ``overrides``: eval.KEY=VALUE strings applied to the run's config for this evaluation (the
    file is unchanged); ``progress``: show the long phases (sampling, nearest-neighbour search).
    ``drawn``: {kind: sample_run's dict} of samples already drawn, scored instead of drawing new
    ones for those kinds.

    Returns {"data": ..., "vqvae": ..., "samples": {kind: ...}, "warnings": [line, ...]}; the
    sections but "warnings" are those written to metrics.json."""
    say = say or (lambda text: None)
    drawn = drawn or {}
    check_scope(list(overrides or []), EVAL_SECTIONS, "evaluate")
    Config().override(list(overrides or []))  # a bad key or value fails before any work
    result = {"data": evaluate_data(str(run_path), data, overrides, progress)}
    say(format_data(result["data"]))
    result.update(vqvae=evaluate_vqvae(str(run_path), data, overrides, progress), samples={})
    say(format_table(result["vqvae"]))
    for k in [kind] if kind else trained_kinds(RunDir(run_path)):
        s = evaluate_samples(
            str(run_path), k, data, n, seed, temperature, top_k, overrides, progress, drawn.get(k)
        )
        result["samples"][k] = s
        say(format_sample_table(s, k))
    say(f"metrics -> {Path(run_path) / 'metrics.json'}; figures -> {Path(run_path) / 'figures'}")
    metrics = {"vqvae": result["vqvae"]}
    metrics.update({f"samples-{k}": v for k, v in result["samples"].items()})
    result["warnings"] = [f.text for f in findings(metrics, stages_finished(RunDir(run_path)))]
    for line in result["warnings"]:
        say(f"warning: {line}")
    return result
