"""The parser of the `brainvq` command line: every subcommand, its options and its help (the
commands themselves run in brainvq.cli). Only the light modules are imported here, so
`brainvq --help` starts at once."""

from __future__ import annotations

import argparse

from brainvq import __version__, config
from brainvq.config import PRIOR_KINDS, kinds_with, number_arg
from brainvq.reporting.verdict import THRESHOLDS_HELP

KIND_HELP = "which prior (default: the run's prior.kind, else the one the run holds)"
TEMPERATURE_HELP = "> 0; <1 sharper, >1 more varied (default prior.temperature, 0 = the kind's own)"
OVERRIDE_HELP = (
    "Any config value can be set as --SECTION.KEY VALUE (e.g. --vqvae.codebook_size 256 "
    "--prior.maskgit.steps 8) or --set SECTION.KEY=VALUE; sections: data, vqvae, train, prior "
    f"({', '.join(f'prior.{k}' for k in PRIOR_KINDS)}), tune, eval, anomaly. "
    "`brainvq config` prints every key with its default."
)
# the config values each command reads from its command line (None: all of them, as train-vqvae
# records the run's config; other commands: none); any other --SECTION.KEY is refused, not dropped
SCOPES = {"train-vqvae": None, "run": None, "config": None, "tune-decoder": ("tune",)}
SCOPES |= {"evaluate": ("eval",), "train-prior": ("prior", *config.STAGE_TRAIN_KEYS)}
SCOPES["anomaly"] = ("anomaly",)
RUN_DATA = "data folder (default: the one the run was trained on)"


class Commands:
    """Adds subcommands to ``sub`` (argparse's subparsers) with the option groups they share."""

    def __init__(self, sub) -> None:
        self.sub = sub

    def command(self, name: str, help: str, description: str) -> argparse.ArgumentParser:
        """A subcommand; its epilog names the config values it reads."""
        scope = SCOPES.get(name, ())
        epilog = OVERRIDE_HELP if scope is None else None
        if scope:
            epilog = (
                f"Config values it reads: --{config.scope_help(scope).replace(', ', ', --')} VALUE."
            )
        return self.sub.add_parser(name, help=help, description=description, epilog=epilog)

    def configurable(self, p, command: str, note: str = "") -> None:
        """--config, --set, the budget (--max-steps, --max-minutes) and --fresh."""
        p.add_argument("--config", help="TOML config file, or a preset name: quick")
        p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="set a value")
        keys = ", ".join(f"{s}.max_{{0}}" for s in config.BUDGET_SECTIONS[command])
        budget = f"{keys.format('minutes')}; preparation counts. {config.BUDGET_HELP}"
        p.add_argument("--max-steps", type=int, metavar="N", help=keys.format("steps") + note)
        p.add_argument(
            "--max-minutes", type=number_arg(0, closed_low=True), metavar="M", help=budget
        )
        p.add_argument(
            "--fresh",
            action="store_true",
            help="start over: discard the stage's weights and state (kept if the new start "
            "fails on its data or settings)",
        )

    def common(self, p, run: str = "run folder", data: str | None = None) -> None:
        """--run, --data (where given its help) and --quiet."""
        p.add_argument("--run", required=True, help=run)
        if data is not None:
            p.add_argument("--data", help=data)
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    def sampling(self, p, n: tuple, seed: tuple, kind_help: str = KIND_HELP) -> None:
        """-n, --seed, --kind, --temperature and --top-k."""
        p.add_argument("-n", type=int, default=n[0], help=n[1])
        p.add_argument("--seed", type=int, default=seed[0], help=seed[1])
        p.add_argument("--kind", choices=config.PRIOR_KINDS, help=kind_help)
        p.add_argument("--temperature", type=number_arg(0), help=TEMPERATURE_HELP)
        p.add_argument("--top-k", type=int, help="draw among the k likeliest codes (0 = all)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="brainvq",
        description="Train VQ-VAEs of brain MRI slices, evaluate them, and sample new brains.",
        epilog=OVERRIDE_HELP,
    )
    parser.add_argument("--version", action="version", version=f"brainvq {__version__}")
    c = Commands(parser.add_subparsers(dest="command", required=True))
    groups = (_training_commands, _sample_command, _scoring_commands, _job_commands)
    for add in (*groups, _tool_commands):  # in the order `brainvq --help` lists them
        add(c)
    return parser


def _training_commands(c: Commands) -> None:
    """train-vqvae, train-prior and tune-decoder: the stages one at a time."""
    p = c.command(
        "train-vqvae",
        "train (or resume) the VQ-VAE of a run",
        "Train the VQ-VAE of RUN on DATA, keeping each subject in one split. An interrupted run "
        "resumes; a finished one is reused unless --fresh or a larger budget. Default config: RUN's.",
    )
    p.add_argument("--data", required=True, help="data folder (any supported layout) or 'default'")
    c.common(p)
    c.configurable(p, "train-vqvae")

    p = c.command(
        "train-prior",
        "train (or resume) a prior over the run's code maps",
        "Encode the splits into code maps (cached in RUN/codes) and train a prior that samples "
        "new ones. Checkpoints, resume and budgets work as in train-vqvae.",
    )
    c.common(p, "run folder with a trained VQ-VAE", RUN_DATA)
    p.add_argument("--kind", choices=config.PRIOR_KINDS, help="which prior (default prior.kind)")
    c.configurable(p, "train-prior", " (a DCGAN step: one D and one G update)")

    p = c.command(
        "tune-decoder",
        "tune a copy of the decoder to a MaskGIT prior's samples (cleaner sample texture)",
        "Tune a copy of the decoder to turn training maps with up to tune.max_share of codes "
        "redrawn by the prior into the real slices; kept unless samples come out less varied.",
    )
    c.common(p, "run folder with a trained maskgit prior", RUN_DATA)
    tunable = kinds_with(variations=True)
    p.add_argument(
        "--kind", choices=tunable, default=tunable[0], help=f"which prior ({tunable[0]})"
    )
    p.add_argument(
        "--max-share", type=number_arg(0, 1), help="tune.max_share: largest share redrawn"
    )
    p.add_argument("--seed", type=int, help="tune.seed")
    c.configurable(p, "tune-decoder")


def _sample_command(c: Commands) -> None:
    """sample: what a trained prior draws."""
    p = c.command(
        "sample",
        "draw new slices from a run's prior: PNGs, a grid and a manifest",
        "Sample N slices to RUN/samples/ (or --out): sample_0000.png ..., grid.png, manifest.csv "
        "(file, prior, seed, temperature, level and NN-SSIM of the nearest training slice, copy "
        "flag); the same --seed, the same slices. --like: variations (maskgit). --level, "
        "--volumes (NIfTI stacks, montages, sagittal reslices): a prior trained on levelled "
        "slices (docs/levels.md). --condition: a prior trained on covariates "
        "(docs/conditions.md).",
    )
    c.common(p, data="data for the manifest's NN-SSIM (default: the run's)")
    c.sampling(p, n=(64, "how many slices (default 64)"), seed=(0, "random seed (default 0)"))
    p.add_argument("--like", nargs="+", metavar="IMAGE", help="slices (or folders) to vary")
    p.add_argument("--redraw", type=number_arg(0, 1), help="with --like: share redrawn (0.5)")
    p.add_argument(
        "--level", type=number_arg(0, 1, True), help="axial level: 0 lowest .. 1 highest"
    )
    p.add_argument("--volumes", type=int, default=0, help="draw N whole stacks instead")
    p.add_argument("--slices", type=int, help="slices per stack (default: as in training)")
    p.add_argument(
        "--condition",
        action="append",
        metavar="NAME=VALUE",
        help="draw slices with this covariate (a prior trained with prior.conditions; repeat "
        "for more), e.g. cdr=1, ventricle_fraction=0.06 (docs/conditions.md)",
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="with --condition: classifier-free guidance scale (1 as trained, 0 unconditioned)",
    )
    p.add_argument("--out", help="output folder (default RUN/samples)")


def _scoring_commands(c: Commands) -> None:
    """evaluate and utility: how good a prior's samples are, and what they are good for."""
    p = c.command(
        "evaluate",
        "score a run on the test split and write metrics.json and figures",
        "Subjects per split and leaks; test reconstruction SSIM, PSNR and codebook use of RUN's "
        "VQ-VAE; each prior's N samples against the real slices: NN-SSIM, realism ratio, "
        "diversity, copies, code-histogram distance; for a prior trained with prior.conditions, "
        "how well its samples follow the values asked (eval.condition_*). " + THRESHOLDS_HELP,
    )
    c.common(p, data=RUN_DATA)
    n, seed = (None, "samples per prior (default eval.n_samples)"), (None, "default eval.seed")
    c.sampling(p, n, seed, kind_help="score this prior only (default: every one)")

    p = c.command(
        "utility",
        "train on synthetic, test on real (TSTR): do a conditioned prior's slices train models?",
        "A small CNN classifies TARGET (a categorical covariate, or NAME>=T: below / at or above "
        "T) or regresses it (a continuous one) from a slice; trained on N synthetic slices drawn "
        "from RUN's conditioned prior with the labels asked, on the real training slices, and on "
        "both, each from --seeds seeds for --steps steps; tested on the real test brains "
        "(never in training). A table, and RUN/utility.json (docs/conditions.md).",
    )
    c.common(p, data=RUN_DATA)
    p.add_argument("--kind", choices=("maskgit", "transformer"), help=KIND_HELP)
    p.add_argument(
        "--target",
        metavar="NAME[>=T]",
        help="what to read from a slice, a covariate the prior was trained on, e.g. diagnosis, "
        "ventricle_fraction, 'cdr>=1' (CDR 0 against 1 and 2); default: its first condition",
    )
    p.add_argument("-n", type=int, help="synthetic slices (default: as many as real training ones)")
    p.add_argument("--steps", type=int, default=600, help="training steps of each classifier (600)")
    p.add_argument("--seeds", type=int, default=3, help="classifiers per training set (3)")
    p.add_argument("--guidance", type=float, default=1.0, help="guidance of the draws (1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic slices (0)")


def _job_commands(c: Commands) -> None:
    """run (the whole job), score and anomaly."""
    p = c.command(
        "run",
        "the whole job: VQ-VAE, prior, samples, evaluation (the original driver.py)",
        "Train (or reuse) the VQ-VAE and the prior of RUN on DATA, tune a decoder to a maskgit "
        "prior (if tune has a budget), sample 64 slices, evaluate them, write report.html. "
        "Finished stages are reused unless --fresh or given a larger budget. Python: "
        "brainvq.pipeline.run. " + THRESHOLDS_HELP,
    )
    p.add_argument("--data", default="default", help="data folder or 'default' (embedded slices)")
    c.common(p)
    p.add_argument("--kind", choices=config.PRIOR_KINDS, help="which prior (default prior.kind)")
    c.configurable(p, "run", " (tune only where the config tunes)")

    p = c.command(
        "score",
        "bits per code of slices under a run's prior (flags unusual slices)",
        "Print -log2 p(code map) / codes of each slice under an autoregressive prior: low = "
        "typical of the training data; 'unusual' = above the 99th percentile of the test split.",
    )
    p.add_argument("--run", required=True, help="run folder with a trained autoregressive prior")
    p.add_argument("images", nargs="+", help="PNG/JPEG slices or folders of them")
    p.add_argument("--kind", choices=kinds_with(likelihood=True), help=KIND_HELP)
    p.add_argument("--data", help="data folder for the test-split reference (default: the run's)")

    p = c.command("anomaly", "anomaly maps: where slices depart from the run's healthy brains",
        "Redraw the codes the prior finds unlikely, decode, map where the slice differs; flag "
        "slices above the 99th percentile of the run's real test slices.")  # fmt: skip
    c.common(p, "run folder with a transformer (or maskgit) prior", "data for the test reference")
    p.add_argument("images", nargs="+", help="PNG/JPEG slices or folders of them")
    p.add_argument("--kind", choices=config.ANOMALY_PRIORS, help="default: transformer if any")
    p.add_argument("--out", help="for NAME_anomaly.png, NAME_map.npy, scores.csv (RUN/anomaly)")


def _tool_commands(c: Commands) -> None:
    """prepare-oasis1, report and config."""
    p = c.command(
        "prepare-oasis1",
        "turn the raw OASIS-1 release into keras_png_slices train/validate/test folders",
        "Slice each subject's T88_111 masked volume (Analyze) under DISCS_DIR between the "
        "--first and --last axial fractions, scale to 8 bits, pad or crop to --size and write "
        "OUT/keras_png_slices_{train,validate,test}, split by subject.",
    )
    p.add_argument("discs_dir", help="folder holding the OASIS-1 discs (disc1, disc2, ...)")
    p.add_argument("out", help="output folder for the keras_png_slices_* folders")
    p.add_argument("--first", type=float, default=0.2, help="first axial fraction kept (0.2)")
    p.add_argument("--last", type=float, default=0.8, help="last axial fraction kept (0.8)")
    p.add_argument("--size", type=int, default=256, help="output side in pixels (256)")
    p.add_argument("--split", type=float, nargs=3, default=(0.85, 0.1, 0.05), help="shares")
    p.add_argument("--seed", type=int, default=0, help="seed of the subject split (0)")
    p.add_argument("--overwrite", action="store_true", help="replace slices already in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = c.command(
        "report",
        "write RUN/report.html: one self-contained page of the run",
        "Metrics, curves and figures of the run in one HTML file that opens offline.",
    )
    p.add_argument("--run", required=True, help="run folder")

    p = c.command(
        "config",
        "print the config as TOML (defaults, or a file with overrides)",
        "Print every setting: the defaults, or --config FILE with overrides applied. Save it, "
        "edit it, pass it back with --config.",
    )
    p.add_argument("--config", help="TOML config file or preset name")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
