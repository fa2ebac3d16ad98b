"""The whole job, as one call: VQ-VAE, prior, decoder tuning, samples, evaluation, report.

    from brainvq.config import Config
    from brainvq.pipeline import run
    result = run("default", "runs/demo", Config.load("src/brainvq/configs/quick.toml"))

is `brainvq run --data default --run runs/demo --config quick` (the original project's driver).
Each stage is one keyword call to the library; a stage whose output the run folder already holds is
reused, unless ``fresh``. Under DDP (train.devices > 1) every process trains both training stages;
then only rank 0 tunes, samples, evaluates and writes the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from brainvq.config import Config
from brainvq.data.summary import describe_data
from brainvq.errors import BudgetTooSmall
from brainvq.evaluation.evaluate import evaluate_run
from brainvq.priors.tuned_decoder import (
    TUNABLE_KINDS,
    decoder_path,
    refusal_path,
    tuned_decoder_is_current,
    tuning_refused,
)
from brainvq.reporting.report import write_report
from brainvq.runs import RunDir
from brainvq.sampling import describe_samples, sample_run
from brainvq.training import decoder, prior, vqvae
from brainvq.training.budget import can_continue
from brainvq.training.stage import StageResult
from brainvq.training.stage import describe as describe_stage

SAMPLES = 64  # slices `run` writes to RUN/samples
SAMPLE_SEED = 0


def tune_stage(
    run_path: str | Path,
    kind: str,
    cfg: Config,
    data: str | None = None,
    fresh: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> StageResult | None:
    """`run`'s decoder-tuning stage: for a maskgit prior with a tune budget, unless the run already
    holds a decoder tuned to its current prior or a tuning to it was not kept before, and the
    budget is not larger than the one that tuning ended under."""
    if kind not in TUNABLE_KINDS or not cfg.tune.enabled():
        return None
    run_dir = RunDir(run_path)
    larger = can_continue(run_dir, f"decoder-{kind}", decoder.tune_budget(cfg.tune))
    if not fresh and not larger:  # a larger budget goes on from where the tuning ended
        if tuned_decoder_is_current(run_dir, kind):
            path = decoder_path(run_dir, kind)
            say(f"decoder already tuned to the {kind} prior: {path} (use --fresh to redo)")
            return None
        if tuning_refused(run_dir, kind):
            say(
                f"decoder tuning to this {kind} prior was not kept before "
                f"({refusal_path(run_dir, kind)}); skipped (`brainvq tune-decoder --fresh` tries "
                "again)"
            )
            return None
    try:
        result = decoder.tune_decoder(str(run_path), kind, cfg.tune, data, fresh, progress)
    except BudgetTooSmall as e:  # tuning is optional: the run goes on without it
        say(f"decoder tuning skipped: {e}")
        return None
    say(describe_stage(result))
    return result


def run(
    data: str = "default",
    run: str | Path = "runs/demo",
    config: Config | None = None,
    kind: str | None = None,
    fresh: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict:
    """Train (or reuse) every stage of a run and write all its outputs.

    Args:
        data: data folder in any supported layout, or "default" (the embedded slices).
        run: run folder.
        config: the configuration (default: Config()).
        kind: which prior (default: config.prior.kind).
        fresh: redo every stage instead of reusing what the run folder holds.
        progress: show progress bars.
        say: where each stage's one-line summary goes (print by default).

    Returns a dict with each stage's summary: "data" (one line on the splits found), "vqvae",
    "prior", "tune" (None if skipped), "samples" (without the arrays), "evaluation" (its
    "warnings" too: one line per weak result, brainvq.reporting.verdict) and "report" (its
    path); on a DDP rank other than 0 only the two training stages. The samples written to
    RUN/samples are the ones evaluated (with their manifest.csv).
    """
    cfg = config or Config()
    kind = kind or cfg.prior.kind
    out: dict = {"data": describe_data(data, cfg.data)}
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("RANK", "0") == "0":
        say(out["data"])  # once, not in every DDP process
    out["vqvae"] = vqvae.train_vqvae(data, str(run), cfg, fresh=fresh, progress=progress)
    if out["vqvae"].get("is_global_zero", True):
        say(describe_stage(out["vqvae"], notes=False))  # the data line said the subjects
    out["prior"] = prior.train_prior(str(run), cfg, kind, data, fresh=fresh, progress=progress)
    if not out["prior"].get("is_global_zero", True):
        return out  # a DDP worker's part ends with training
    say(describe_stage(out["prior"]))
    out["tune"] = tune_stage(run, kind, cfg, data, fresh, progress, say)
    drawn = sample_run(run, kind, SAMPLES, SAMPLE_SEED, progress=progress)
    say(describe_samples(drawn))
    out["samples"] = {k: v for k, v in drawn.items() if k not in ("codes", "images")}
    out["evaluation"] = evaluate_run(run, data, say=say, drawn={kind: drawn})
    out["report"] = write_report(run)
    say(f"report -> {out['report']}")
    return out
