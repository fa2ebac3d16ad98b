"""Evaluate a run: what its splits hold (subjects per split, subjects in more than one split, real
test slices with near-twins in training), then every registered measure
(brainvq.evaluation.measures, one file each) of the VQ-VAE on the test split and of each prior's
samples against the real slices; metrics.json, the figures (brainvq.reporting.figures), the
printed tables (the measures' rows) and the verdict's warnings (brainvq.reporting.verdict).

    from brainvq.evaluation.evaluate import evaluate_run
    result = evaluate_run("runs/demo", say=print)     # or `brainvq evaluate --run runs/demo`
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from brainvq.codes import code_maps, encode_images
from brainvq.config import Config, check_scope
from brainvq.data import load_data
from brainvq.data.subjects import describe as describe_subjects
from brainvq.data.subjects import warn_leaks, warn_once
from brainvq.evaluation.keys import COPY_THRESHOLD
from brainvq.evaluation.manifest import reference_cache, write_manifest
from brainvq.evaluation.measure import Context
from brainvq.evaluation.measures import run_measures, table_rows
from brainvq.evaluation.realism import NEAR_TWIN_MEANS, near_twin_warning, real_reference
from brainvq.priors import load_prior, trained_kinds
from brainvq.reporting.figures import sample_figures, vqvae_figures
from brainvq.reporting.report import stages_finished
from brainvq.reporting.verdict import findings
from brainvq.runs import Run, RunDir, load_run
from brainvq.sampling import sample_images

EVAL_SECTIONS = ("eval",)  # what evaluate takes as overrides: how it measures, not what


@torch.no_grad()
def reconstruct_all(run: Run, images: np.ndarray, batch_size: int = 64):
    """Codes (N, h, w) and reconstructions (N, S, S) float32 of uint8 slices."""
    codes = torch.from_numpy(encode_images(run, images, batch_size))
    return codes, run.vqvae.decode(codes, batch_size)[:, 0].numpy()


def evaluate_data(
    run_path: str, data: str | None = None, overrides: Sequence[str] = (), progress: bool = False
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


def load_for_evaluation(run_path: str | Path, overrides: Sequence[str] | None = None) -> Run:
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
    """Score the run's VQ-VAE on the test split (every registered `vqvae` measure), write figures
    and the `vqvae` metrics section (``overrides``: eval.KEY=VALUE for this evaluation;
    ``progress``: show the long phases)."""
    run = load_for_evaluation(run_path, overrides)
    splits, arrays = load_data(run.data_root(data), run.config.data, progress=progress)
    test = np.asarray(arrays["test"])
    codes, recons = reconstruct_all(run, test, run.config.eval.batch_size)
    train = np.asarray(arrays["train"])
    ctx = Context(run, "vqvae", recons, codes, test, train, splits, progress=progress)
    result = run_measures(ctx)
    vqvae_figures(run, test.astype(np.float32) / 255.0, recons, ctx.per_item["ssim"], codes, splits)
    run.dir.update_metrics("vqvae", result)
    return result


def _table(rows: list[tuple[str, str]]) -> str:
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


def _measured(section: str, values: dict, head: list[tuple[str, str]]) -> str:
    """The head rows, then every measure's rows of the section, then their words lines."""
    rows, words = table_rows(section, values)
    text = _table(head + [(r.label, r.value) for r in rows])
    return text + "".join("\n" + w.value for w in words)


def format_table(result: dict) -> str:
    """A short plain-text table of the VQ-VAE metrics."""
    return _measured("vqvae", result, [])


def sample_context(
    run: Run, kind: str, prior, drawn: dict, root, progress: bool = False
) -> Context:
    """What the sample measures get: ``drawn`` (brainvq.sampling's dict, with its seed) of the
    prior ``kind``, the training slices and the real slices of eval.reference with their codes."""
    cfg = run.config
    splits, arrays = load_data(root, cfg.data, progress=progress)
    ref = cfg.eval.reference  # the split whose real slices the samples are scored against
    real_codes = code_maps(run, root, progress=progress)[ref]
    train, real = np.asarray(arrays["train"]), np.asarray(arrays[ref])
    return Context(
        run, "samples", drawn["images"], drawn["codes"], real, train, splits, ref, root,
        progress, kind, prior, drawn, real_codes,
    )  # fmt: skip


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
    """Sample from the run's prior, score the samples by every registered `samples` measure and
    write figures and the `samples-KIND` metrics section.

    temperature / top_k default to those in the prior's own config (see brainvq.priors);
    overrides and progress as in evaluate_vqvae. ``drawn``: samples already drawn by
    brainvq.sampling.sample_run, scored instead of drawing new ones (n, seed, temperature and
    top_k are then theirs); their manifest.csv is written beside their PNGs."""
    run = load_for_evaluation(run_path, overrides)
    ev, root = run.config.eval, run.data_root(data)
    prior = load_prior(run, kind)
    if drawn is None:
        seed = ev.seed if seed is None else seed
        drawn = sample_images(
            run, prior, n or ev.n_samples, seed, ev.batch_size, temperature, top_k, progress
        )
    drawn = {**drawn, "seed": drawn.get("seed", seed)}
    ctx = sample_context(run, kind, prior, drawn, root, progress)
    scores = run_measures(ctx)
    if drawn.get("out") is not None:
        scores["manifest"] = str(_manifest(ctx, scores))
    sample_figures(ctx, scores)
    run.dir.update_metrics(f"samples-{kind}", scores)
    return scores


def _manifest(ctx: Context, scores: dict) -> Path:
    """manifest.csv beside the drawn samples: each one's NN-SSIM, whether it is a copy and its
    nearest training slice's level."""
    per, levels = ctx.per_item, ctx.splits.slice_levels("train")
    copy = per["nn_ssim"] > scores[COPY_THRESHOLD]
    near = {"nn_ssim": per["nn_ssim"], "copy": copy}
    near["level"] = [levels[i] for i in per["nearest"]]
    return write_manifest(ctx.drawn["out"], ctx.drawn, near)


def _sampling(s: dict) -> str:
    out = ""
    if "temperature" in s:
        out += f", temperature {s['temperature']:g}, top-k {s['top_k'] or 'all'}"
    if s.get("decoder") == "tuned":
        out += ", tuned decoder"
    return out


def format_sample_table(s: dict, kind: str) -> str:
    """A short plain-text table of the sample metrics ("real X": the reference split's slices)."""
    head = [
        (f"{kind} samples", f"{s['n_samples']} (seed {s['seed']}{_sampling(s)})"),
        ("scored against", f"the {s.get('reference', 'test')} split's slices"),
    ]
    return _measured("samples", s, head)


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
    given, gets each table as it is done, then one line per warning (brainvq.reporting.verdict).
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
