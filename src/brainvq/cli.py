"""`brainvq` command line: parse, call one library function, print.

Errors are one line on stderr and exit 2; Ctrl-C exits 130. The library is imported by each command
when it runs, so `brainvq --help` starts at once, and so that share_cpu can set up OpenMP before
torch loads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import warnings
from collections.abc import MutableMapping
from pathlib import Path

from brainvq import config
from brainvq.cli_parser import SCOPES, build_parser
from brainvq.errors import BrainVQError, Interrupted
from brainvq.runlock import run_lock

__all__ = ["build_parser", "load_config", "main", "share_cpu"]

# the commands that write into their --run folder: one at a time per folder (brainvq.runlock)
WRITERS = ("train-vqvae", "train-prior", "tune-decoder", "run", "evaluate", "report", "anomaly")
WRITERS += ("sample", "utility")  # sample: unless --out is outside the run


def _quiet_libraries() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"brainvq: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=".*litlogger.*")


def load_config(args: argparse.Namespace, overrides: list[str]) -> config.Config:
    """--config FILE (or a preset name), else the run's own config.toml, else the defaults; then
    --max-steps / --max-minutes (the budget of the command's stages), --set and --SECTION.KEY."""
    cfg = config.command_config(getattr(args, "config", None), getattr(args, "run", None))
    sections = config.BUDGET_SECTIONS.get(args.command, ())
    steps, minutes = getattr(args, "max_steps", None), getattr(args, "max_minutes", None)
    assignments = cfg.budget_assignments(sections, steps, minutes)
    assignments += list(getattr(args, "set", None) or []) + overrides
    if getattr(args, "max_share", None) is not None:
        assignments.append(f"tune.max_share={args.max_share}")
    if args.command == "tune-decoder" and args.seed is not None:
        assignments.append(f"tune.seed={args.seed}")
    return cfg.override(assignments)


def cmd_train_vqvae(args, overrides) -> int:
    from brainvq.training.vqvae import describe, train_vqvae

    res = train_vqvae(args.data, args.run, load_config(args, overrides), args.fresh, not args.quiet)
    if res.get("is_global_zero", True):  # a DDP worker process reports nothing
        print(describe(res))
    return 0


def cmd_train_prior(args, overrides) -> int:
    from brainvq.training.prior import describe, train_prior

    cfg = load_config(args, overrides)
    kind = args.kind or cfg.prior.kind
    res = train_prior(args.run, cfg, kind, args.data, args.fresh, not args.quiet)
    if res.get("is_global_zero", True):
        print(describe(res))
    return 0


def cmd_tune_decoder(args, overrides) -> int:
    from brainvq.training.decoder import describe, tune_decoder

    tune = load_config(args, overrides).tune
    res = tune_decoder(args.run, args.kind, tune, args.data, args.fresh, not args.quiet)
    if res.get("is_global_zero", True):
        print(describe(res))
    return 0


def cmd_sample(args, overrides) -> int:
    from brainvq.evaluation.manifest import describe_manifest, sample_with_manifest

    keys = "kind n seed temperature top_k out like redraw data level volumes slices".split()
    keys += ["condition", "guidance"]
    drawn = sample_with_manifest(
        args.run, progress=not args.quiet, **{k: vars(args)[k] for k in keys}
    )
    print(describe_manifest(drawn))
    return 0


def cmd_evaluate(args, overrides) -> int:
    from brainvq.evaluation.evaluate import evaluate_run

    sampling = (args.kind, args.n, args.seed, args.temperature, args.top_k)
    evaluate_run(args.run, args.data, *sampling, print, overrides, progress=not args.quiet)
    return 0


def cmd_utility(args, overrides) -> int:
    from brainvq.evaluation.utility import format_utility, utility_run

    keys = "kind target n data steps seeds guidance seed".split()
    res = utility_run(args.run, progress=not args.quiet, **{k: vars(args)[k] for k in keys})
    print(format_utility(res))
    print(f"-> {Path(args.run) / 'utility.json'}")
    return 0


def cmd_run(args, overrides) -> int:
    from brainvq.pipeline import run

    cfg = load_config(args, overrides)
    run(args.data, args.run, cfg, args.kind, args.fresh, progress=not args.quiet, say=print)
    return 0


def cmd_score(args, overrides) -> int:
    from brainvq.evaluation.likelihood import format_scores, score_run

    print(format_scores(score_run(args.run, args.images, args.kind, args.data)))
    return 0


def cmd_anomaly(args, overrides) -> int:
    from brainvq.applications.anomaly_files import anomaly_files, describe

    section = load_config(args, overrides).anomaly
    res = anomaly_files(
        args.run, args.images, args.out, args.kind, args.data, not args.quiet, section
    )
    print(describe(res))
    return 0


def cmd_prepare_oasis1(args, overrides) -> int:
    from brainvq.data.volumes import describe, prepare_oasis1

    shape = {"first": args.first, "last": args.last, "size": args.size, "seed": args.seed}
    summary = prepare_oasis1(
        Path(args.discs_dir), Path(args.out), split=tuple(args.split), progress=not args.quiet,
        overwrite=args.overwrite, **shape,
    )  # fmt: skip
    print(describe(summary, args.out))
    return 0


def cmd_report(args, overrides) -> int:
    from brainvq.reporting.report import write_report

    print(f"report -> {write_report(args.run)}")
    return 0


def cmd_config(args, overrides) -> int:
    print(load_config(args, overrides).to_toml(), end="")
    return 0


def writes_run(args: argparse.Namespace) -> bool:
    """True for a command that writes into its --run folder (`sample --out` elsewhere does not)."""
    if args.command not in WRITERS:
        return False
    if args.command == "sample" and args.out:
        out, run = Path(args.out).expanduser().resolve(), Path(args.run).expanduser().resolve()
        return out == run or run in out.parents
    return True


def writer_lock(args: argparse.Namespace, argv: list[str]):
    """The run folder's lock for a command that writes it (brainvq.runlock), else no lock."""
    if not writes_run(args):
        return contextlib.nullcontext()
    command = shlex.join(["brainvq", *argv])
    return run_lock(args.run, command, create=args.command in ("train-vqvae", "run"))


def share_cpu(env: MutableMapping[str, str] = os.environ) -> None:
    """Let torch's OpenMP threads sleep while they wait instead of spinning (OMP_WAIT_POLICY =
    PASSIVE, unless the environment sets it): beside another CPU-bound job a spinning thread
    takes the CPU from the thread the others wait for, and training slows far more than the
    share it loses (bench/results/cpu_sharing.md). Must run before torch is imported."""
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `brainvq` command."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    share_cpu()
    args, extra = build_parser().parse_known_args(argv)
    _quiet_libraries()
    try:
        overrides = config.assignments_from_args(extra)
        given = list(getattr(args, "set", None) or []) + overrides
        config.check_scope(given, SCOPES.get(args.command, ()), args.command)
        with writer_lock(args, sys.argv[1:] if argv is None else argv):
            return globals()[f"cmd_{args.command.replace('-', '_')}"](args, overrides)
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
