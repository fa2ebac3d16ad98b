"""`brainvq` command line: parse, call the library, print. Errors are one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from pathlib import Path

from brainvq.config import PRIOR_KINDS, Config
from brainvq.errors import BrainVQError, ConfigError, Interrupted

PRESETS = Path(__file__).parent / "configs"
KIND_HELP = "which prior (default: the run's prior.kind, else the one the run holds)"
TEMPERATURE_HELP = (
    "sampling temperature, > 0 (<1 sharper, >1 more varied; default: the prior's "
    "prior.temperature, or if 0 its kind's own: 0.6 for transformer and maskgit, 0.8 for "
    "dcgan, 1.0 for pixelcnn)"
)
TOP_K_HELP = "draw each code among the k likeliest only (0 = all; default prior.top_k)"

OVERRIDE_HELP = (
    "Any config value can be set as --SECTION.KEY VALUE (e.g. --vqvae.codebook_size 256 "
    "--train.lr 2e-3) or --set SECTION.KEY=VALUE; sections: data, vqvae, train, prior, eval. "
    "`brainvq config` prints every key with its default."
)


def _quiet_libraries() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"brainvq: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*litlogger.*")


def load_config(args: argparse.Namespace, overrides: list[str]) -> Config:
    """Defaults, then --config FILE (or a preset name), then command-line overrides."""
    cfg = Config()
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.exists() and (PRESETS / f"{args.config}.toml").exists():
            path = PRESETS / f"{args.config}.toml"
        cfg = Config.load(path)
    assignments = list(getattr(args, "set", None) or []) + overrides
    if getattr(args, "max_minutes", None) is not None:
        assignments.append(f"train.max_minutes={args.max_minutes}")
    return cfg.override(assignments)


def _split_overrides(extra: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or "." not in tok.split("=")[0]:
            raise ConfigError(f"unknown argument {tok!r} (config values are --SECTION.KEY VALUE)")
        if "=" in tok:
            out.append(tok[2:])
            i += 1
        elif i + 1 < len(extra):
            out.append(f"{tok[2:]}={extra[i + 1]}")
            i += 2
        else:
            raise ConfigError(f"{tok} needs a value")
    return out


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file, or a preset name: quick")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a value")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget per training stage")
    p.add_argument("--fresh", action="store_true", help="start over: discard the run's state")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _positive(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number > 0")
    return value


def _share(text: str) -> float:
    """argparse type: a share in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a share in (0, 1], e.g. 0.5")
    return value


def _add_sampling_args(
    p: argparse.ArgumentParser,
    n: tuple[int | None, str],
    seed: tuple[int | None, str],
    kind_help: str = KIND_HELP,
) -> None:
    """-n, --seed, --kind, --temperature, --top-k: what to draw from which prior, and how."""
    p.add_argument("-n", type=int, default=n[0], help=n[1])
    p.add_argument("--seed", type=int, default=seed[0], help=seed[1])
    p.add_argument("--kind", choices=PRIOR_KINDS, help=kind_help)
    p.add_argument("--temperature", type=_positive, help=TEMPERATURE_HELP)
    p.add_argument("--top-k", type=int, help=TOP_K_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="brainvq",
        description="Train VQ-VAEs of brain MRI slices, evaluate them, and sample new brains.",
        epilog=OVERRIDE_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train-vqvae",
        help="train (or resume) the VQ-VAE of a run",
        description="Train the VQ-VAE of RUN on DATA. An interrupted run resumes from "
        "RUN/state; a finished one is reused unless --fresh.",
        epilog=OVERRIDE_HELP,
    )
    p.add_argument("--data", required=True, help="data folder (any supported layout) or 'default'")
    p.add_argument("--run", required=True, help="run folder, e.g. runs/oasis")
    _add_config_args(p)

    p = sub.add_parser(
        "evaluate",
        help="score a run on the test split and write metrics.json and figures",
        description="Test reconstruction SSIM (skimage), PSNR and codebook usage of RUN's VQ-VAE; "
        "then, for each trained prior, N samples scored by NN-SSIM against the training split, "
        "realism ratio, the share of samples at least as close to the training data as the least "
        "close real test slice, diversity, copies and code-histogram distance; and the share of "
        "real test slices with near-twins in the training split (neighbouring slices of the same "
        "brain: a split that shares brains) with the realism ratio past them, a diagnostic. "
        "Figures include KIND_nn_ssim.png, the samples' NN-SSIM beside the real test slices', and "
        "KIND_neighbour_profile.png, their mean SSIM to the k-th nearest training slice.",
    )
    _add_sampling_args(
        p,
        n=(None, "samples per prior (default eval.n_samples, 100)"),
        seed=(None, "seed of those samples (default eval.seed)"),
        kind_help="score this prior only (default: every one)",
    )
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--data", help="data folder (default: the one the run was trained on)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser(
        "run",
        help="the whole job: VQ-VAE, prior, samples, evaluation (the original driver.py)",
        description="Train (or reuse) the VQ-VAE and the prior of RUN on DATA, tune a decoder to "
        "a maskgit prior's samples for prior.tune_decoder_minutes (0 = skip; see tune-decoder), "
        "sample, evaluate and write every output, report.html last. Stages already in the run "
        "folder are reused unless --fresh.",
        epilog=OVERRIDE_HELP,
    )
    p.add_argument("--data", default="default", help="data folder or 'default' (embedded slices)")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--kind", choices=PRIOR_KINDS, help="which prior (default prior.kind)")
    _add_config_args(p)

    p = sub.add_parser(
        "train-prior",
        help="train (or resume) a prior over the run's code maps",
        description="Encode the training split into code maps (cached in RUN/codes) and train a "
        "prior that samples new ones. Checkpoints, resume and the time budget work as in "
        "train-vqvae.",
        epilog=OVERRIDE_HELP,
    )
    p.add_argument("--run", required=True, help="run folder with a trained VQ-VAE")
    p.add_argument("--kind", choices=PRIOR_KINDS, help="which prior (default prior.kind)")
    p.add_argument("--data", help="data folder (default: the one the VQ-VAE was trained on)")
    _add_config_args(p)

    p = sub.add_parser(
        "sample",
        help="draw new slices from a run's prior: PNGs and a grid",
        description="Sample N code maps from the prior, decode them and write RUN/samples/ "
        "(or --out): sample_0000.png ... and grid.png. The same --seed gives the same slices. "
        "With --like, draw variations of given slices instead (maskgit prior): each slice is "
        "encoded, --redraw of its codes are hidden at random and drawn anew given the rest, and "
        "like_pairs.png shows each slice above its variation. A variation is an edit of that "
        "slice, not a new brain: at --redraw 0.5 its nearest training slice is the slice itself.",
    )
    p.add_argument("--run", required=True, help="run folder")
    _add_sampling_args(
        p, n=(64, "how many slices (default 64)"), seed=(0, "random seed (default 0)")
    )
    p.add_argument(
        "--like",
        nargs="+",
        metavar="IMAGE",
        help="PNG/JPEG slices or folders of them to draw variations of (taken in turn)",
    )
    p.add_argument(
        "--redraw",
        type=_share,
        help="with --like: share of each slice's codes drawn anew, in (0, 1] (default 0.5)",
    )
    p.add_argument("--out", help="output folder (default RUN/samples)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "tune-decoder",
        help="tune a copy of the decoder to a MaskGIT prior's samples (cleaner sample texture)",
        description="Redraw a random share (up to --max-share) of each training code map with the "
        "prior, given the rest, and tune a copy of the VQ-VAE decoder to turn such maps back into "
        "the real slices, beside the unchanged maps. Writes RUN/decoder-KIND.safetensors, which "
        "`sample`, `evaluate` and `run` then use to decode that prior's samples (and only while "
        "that prior is not retrained); reconstructions keep the VQ-VAE's own decoder. An "
        "interrupted tuning (saved every 30 s and on Ctrl-C in RUN/state/decoder-KIND/) resumes "
        "within the same budget unless --fresh.",
    )
    p.add_argument("--run", required=True, help="run folder with a trained maskgit prior")
    p.add_argument("--kind", choices=("maskgit",), default="maskgit", help="which prior (maskgit)")
    p.add_argument("--max-minutes", type=_positive, default=8.0, help="tuning budget (default 8)")
    p.add_argument(
        "--max-share", type=float, default=0.5, help="largest share of a map redrawn (default 0.5)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--data", help="data folder (default: the one the run was trained on)")
    p.add_argument(
        "--fresh", action="store_true", help="start over instead of resuming an unfinished tuning"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "score",
        help="bits per code of slices under a run's prior (flags unusual slices)",
        description="Encode each slice (PNG/JPEG files or folders of them) with the run's VQ-VAE "
        "and print -log2 p(code map) / (number of codes) under an autoregressive prior "
        "(pixelcnn or transformer). Low = the prior finds the slice typical of its training "
        "data; high = unusual (another contrast, orientation, artefact, pathology, or a bad "
        "slice). Each slice is set beside the run's real test slices: 'unusual' marks a slice "
        "above the 99th percentile of the test split's bits per code.",
    )
    p.add_argument("--run", required=True, help="run folder with a trained autoregressive prior")
    p.add_argument("images", nargs="+", help="PNG/JPEG slices or folders of them")
    p.add_argument("--kind", choices=PRIOR_KINDS, help=KIND_HELP)
    p.add_argument("--data", help="data folder for the test-split reference (default: the run's)")

    p = sub.add_parser(
        "prepare-oasis1",
        help="turn the raw OASIS-1 release into keras_png_slices train/validate/test folders",
        description="Read each subject's OAS1_xxxx_MR1/PROCESSED/MPRAGE/T88_111/"
        "OAS1_xxxx_MR1_mpr_n4_anon_111_t88_masked_gfc.hdr (Analyze 7.5) under DISCS_DIR, keep the "
        "axial slices between the --first and --last fractions of the volume, scale each volume to "
        "8 bits (0 stays 0, its 99.5th percentile of non-zero voxels and above become 255), pad or "
        "crop to --size, and write OUT/keras_png_slices_{train,validate,test}, split by subject.",
    )
    p.add_argument("discs_dir", help="folder holding the OASIS-1 discs (disc1, disc2, ...)")
    p.add_argument("out", help="output folder for the keras_png_slices_* folders")
    p.add_argument("--first", type=float, default=0.2, help="first axial fraction kept (0.2)")
    p.add_argument("--last", type=float, default=0.8, help="last axial fraction kept (0.8)")
    p.add_argument("--size", type=int, default=256, help="output side in pixels (256)")
    p.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.85, 0.1, 0.05),
        metavar=("TRAIN", "VAL", "TEST"),
        help="subject shares (0.85 0.1 0.05)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the subject split (0)")
    p.add_argument("--overwrite", action="store_true", help="replace slices already in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "report",
        help="write RUN/report.html: one self-contained page of the run",
        description="Config, metrics, training curves, reconstructions, samples, nearest-neighbour "
        "pairs and codebook usage in one HTML file with its images embedded (opens offline).",
    )
    p.add_argument("--run", required=True, help="run folder")

    p = sub.add_parser("config", help="print the config (defaults, or a file with overrides)")
    p.add_argument("--config", help="TOML config file or preset name")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    return parser


def _other_rank(res: dict) -> bool:
    """True in a DDP worker process that is not rank 0 (it trains, but reports nothing)."""
    return not res.get("is_global_zero", True)


def cmd_train_vqvae(args, overrides, last_stage: bool = True) -> int:
    from brainvq.training.vqvae_stage import train_vqvae

    cfg = load_config(args, overrides)
    res = train_vqvae(args.data, args.run, cfg, fresh=args.fresh, progress=not args.quiet)
    if _other_rank(res):
        if last_stage:
            raise SystemExit(0)  # a DDP worker's part ends with training
        return 0
    if res["status"] == "reused":
        print(f"VQ-VAE already trained: {res['weights']} (use --fresh to retrain)")
    else:
        print(
            f"VQ-VAE {res['status']}: {res['epochs']} epochs, {res['steps']} steps in "
            f"{res['seconds']:.0f}s, validation SSIM {res['val_ssim']:.4f} -> {res['weights']}"
        )
    return 0


def cmd_evaluate(args, overrides) -> int:
    from brainvq.evaluate import evaluate_samples, evaluate_vqvae, format_sample_table, format_table
    from brainvq.priors import trained_kinds
    from brainvq.runs import RunDir

    res = evaluate_vqvae(args.run, args.data)
    print(format_table(res))
    kinds = trained_kinds(RunDir(args.run))
    if getattr(args, "kind", None):
        kinds = [args.kind]
    for kind in kinds:
        s = evaluate_samples(
            args.run,
            kind,
            args.data,
            getattr(args, "n", None),
            getattr(args, "seed", None),
            getattr(args, "temperature", None),
            getattr(args, "top_k", None),
        )
        print(format_sample_table(s, kind))
    print(f"metrics -> {Path(args.run) / 'metrics.json'}; figures -> {Path(args.run) / 'figures'}")
    return 0


def cmd_train_prior(args, overrides) -> int:
    from brainvq.training.prior_stage import train_prior

    cfg = load_config(args, overrides)
    kind = args.kind or cfg.prior.kind
    res = train_prior(args.run, cfg, kind, args.data, fresh=args.fresh, progress=not args.quiet)
    if _other_rank(res):
        raise SystemExit(0)  # a DDP worker's part ends with training; rank 0 goes on
    if res["status"] == "reused":
        print(f"{kind} prior already trained: {res['weights']} (use --fresh to retrain)")
    else:
        unit = "bits/hidden code" if kind == "maskgit" else "bits/code"
        loss = (
            f"validation {res['best_val_bpc']:.3f} {unit} (best)"
            if "best_val_bpc" in res
            else f"G loss {res['g_loss']:.3f}, D loss {res['d_loss']:.3f}"
        )
        print(
            f"{kind} prior {res['status']}: {res['steps']} steps in {res['seconds']:.0f}s, "
            f"{loss} -> {res['weights']}"
        )
    return 0


def _pick_kind(run, kind: str | None, likelihood: bool = False) -> str:
    """--kind, else the run's configured prior if trained, else a trained one (with likelihood:
    an autoregressive one, the transformer first)."""
    from brainvq.errors import RunError
    from brainvq.priors import trained_kinds

    if kind:
        return kind
    have = trained_kinds(run.dir)
    if likelihood:
        have = [k for k in ("transformer", "pixelcnn") if k in have]
    if not have:
        what, how = ("autoregressive ", " --kind transformer") if likelihood else ("", "")
        raise RunError(
            f"{run.dir.path}: no trained {what}prior; run `brainvq train-prior{how}` first"
        )
    return run.config.prior.kind if run.config.prior.kind in have else have[0]


def cmd_sample(args, overrides) -> int:
    from brainvq.errors import RunError
    from brainvq.priors import load_prior
    from brainvq.runs import load_run
    from brainvq.sampling import sample_images, write_samples

    if args.n < 1:
        raise RunError(f"-n {args.n}: ask for at least one sample")
    if args.redraw is not None and not args.like:
        raise RunError("--redraw: only with --like IMAGE... (the slices to draw variations of)")
    run = load_run(args.run)
    kind = _pick_kind(run, args.kind)
    prior = load_prior(run, kind)
    out = Path(args.out) if args.out else run.dir.path / "samples"
    if args.like:
        return _sample_variations(args, run, prior, out)
    drawn = sample_images(
        run,
        prior,
        args.n,
        args.seed,
        temperature=args.temperature,
        top_k=args.top_k,
        progress=not getattr(args, "quiet", False),
    )
    grid = write_samples(drawn["images"], out)
    print(
        f"{args.n} {kind} samples in {drawn['seconds']:.2f}s "
        f"({drawn['samples_per_second']:.1f}/s{', tuned decoder' * (drawn['decoder'] == 'tuned')})"
        f" -> {out}/sample_*.png, grid {grid}"
    )
    return 0


def _sample_variations(args, run, prior, out: Path) -> int:
    """`sample --like`: variations of the named slices, with the slice-above-variation figure."""
    import numpy as np
    import torch

    from brainvq.codes import encode_images
    from brainvq.data import read_named_slices
    from brainvq.report import image_grid
    from brainvq.sampling import vary_images, write_samples

    share = 0.5 if args.redraw is None else args.redraw
    files, images = read_named_slices(args.like, run.config.data.image_size)
    codes = torch.from_numpy(encode_images(run, images, run.config.eval.batch_size))
    drawn = vary_images(
        run,
        prior,
        codes,
        args.n,
        share,
        args.seed,
        temperature=args.temperature,
        top_k=args.top_k,
        progress=not args.quiet,
    )
    grid = write_samples(drawn["images"], out, prefix="variation")
    shown = min(8, args.n)
    originals = images[drawn["anchor"][:shown]] / 255.0
    pairs = image_grid(
        np.concatenate([originals, drawn["images"][:shown]]), out / "like_pairs.png", ncol=shown
    )
    changed = (drawn["codes"] != codes[drawn["anchor"]]).float().mean().item()
    print(
        f"{args.n} variations of {len(files)} slice(s) by the {prior.kind} prior, {share:.0%} of "
        f"codes redrawn ({changed:.1%} changed), in {drawn['seconds']:.2f}s -> "
        f"{out}/variation_*.png, grid {grid}, slices above variations {pairs}"
    )
    return 0


def cmd_tune_decoder(args, overrides) -> int:
    from brainvq.decoder_tuning import tune_decoder

    res = tune_decoder(
        args.run,
        args.kind,
        minutes=args.max_minutes,
        max_share=args.max_share,
        seed=args.seed,
        data=args.data,
        progress=not args.quiet,
        fresh=args.fresh,
    )
    if res["resumed_at"]:
        print(f"resumed an unfinished tuning at step {res['resumed_at']}")
    done = (
        f"{res['steps']} steps in {res['tune_seconds']:.0f}s on maps with "
        f"{res['slipped_share']:.1%} of codes redrawn; test reconstruction SSIM "
        f"{res['test_ssim_tuned']:.4f} (VQ-VAE decoder {res['test_ssim_vqvae']:.4f}); samples' "
        f"mean pairwise SSIM {res['samples_alike_tuned']:.3f} "
        f"(VQ-VAE decoder {res['samples_alike_vqvae']:.3f})"
    )
    if res["kept"]:
        print(f"decoder tuned to the {res['kind']} prior: {done} -> {res['path']}")
    else:
        print(
            f"decoder tuning not kept: it made the {res['kind']} prior's samples more alike "
            f"({done}); they stay decoded by the VQ-VAE's decoder"
        )
    return 0


def cmd_score(args, overrides) -> int:
    from brainvq.runs import load_run
    from brainvq.scoring import format_scores, score_files

    run = load_run(args.run)
    result = score_files(run, args.images, _pick_kind(run, args.kind, likelihood=True), args.data)
    print(format_scores(result))
    return 0


def cmd_prepare_oasis1(args, overrides) -> int:
    from brainvq.volumes import prepare_oasis1

    summary = prepare_oasis1(
        Path(args.discs_dir),
        Path(args.out),
        first=args.first,
        last=args.last,
        size=args.size,
        split=tuple(args.split),
        seed=args.seed,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    for split, info in summary.items():
        print(f"{split:<9} {len(info['subjects']):>4} subjects {info['slices']:>6} slices")
    print(f"-> {args.out}/keras_png_slices_{{train,validate,test}} and prepare_summary.json")
    return 0


def cmd_report(args, overrides) -> int:
    from brainvq.html_report import write_report

    print(f"report -> {write_report(args.run)}")
    return 0


def _tune_decoder_in_run(args, overrides) -> None:
    """`run`'s decoder-tuning stage: for a maskgit prior, with prior.tune_decoder_minutes > 0,
    unless the run already holds a decoder tuned to its current prior or a tuning to it was not
    kept (RUN/decoder-<kind>.refused.json)."""
    from brainvq.decoder_tuning import (
        TUNABLE_KINDS,
        decoder_path,
        refusal_path,
        tuned_decoder_is_current,
        tuning_refused,
    )
    from brainvq.runs import load_run

    minutes = load_config(args, overrides).prior.tune_decoder_minutes
    if args.kind not in TUNABLE_KINDS or minutes <= 0:
        return
    run_dir = load_run(args.run).dir
    if tuned_decoder_is_current(run_dir, args.kind):
        path = decoder_path(run_dir, args.kind)
        print(f"decoder already tuned to the {args.kind} prior: {path} (use --fresh to redo)")
        return
    if tuning_refused(run_dir, args.kind):
        path = refusal_path(run_dir, args.kind)
        print(
            f"decoder tuning to this {args.kind} prior was not kept before ({path}); skipped "
            "(`brainvq tune-decoder` tries again)"
        )
        return
    tune = argparse.Namespace(
        run=args.run,
        kind=args.kind,
        max_minutes=minutes,
        max_share=0.5,
        seed=0,
        data=args.data,
        fresh=args.fresh,
        quiet=args.quiet,
    )
    cmd_tune_decoder(tune, [])


def cmd_run(args, overrides) -> int:
    # under DDP every rank trains both stages (same processes, same process group); then only
    # rank 0 samples, evaluates and writes the report
    cmd_train_vqvae(args, overrides, last_stage=False)
    args.kind = args.kind or load_config(args, overrides).prior.kind
    cmd_train_prior(args, overrides)
    _tune_decoder_in_run(args, overrides)
    cmd_sample(
        argparse.Namespace(
            run=args.run,
            n=64,
            seed=0,
            kind=args.kind,
            out=None,
            temperature=None,
            top_k=None,
            like=None,
            redraw=None,
        ),
        [],
    )
    cmd_evaluate(argparse.Namespace(run=args.run, data=args.data), [])
    return cmd_report(args, [])


def cmd_config(args, overrides) -> int:
    print(load_config(args, overrides).to_toml(), end="")
    return 0


COMMANDS = {
    "train-vqvae": cmd_train_vqvae,
    "evaluate": cmd_evaluate,
    "train-prior": cmd_train_prior,
    "sample": cmd_sample,
    "tune-decoder": cmd_tune_decoder,
    "score": cmd_score,
    "run": cmd_run,
    "report": cmd_report,
    "prepare-oasis1": cmd_prepare_oasis1,
    "config": cmd_config,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `brainvq` command."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    _quiet_libraries()
    try:
        overrides = _split_overrides(extra)
        return COMMANDS[args.command](args, overrides)
    except Interrupted as e:
        print(f"brainvq: {e}", file=sys.stderr)
        return 130
    except BrainVQError as e:
        print(f"brainvq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainvq: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
