"""Command-line plumbing of the config: a command's starting config, `--section.key VALUE`
arguments, the scope of settings each command reads, budgets and number arguments."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from brainvq.config.schema import Config, members
from brainvq.errors import ConfigError

# the config sections whose budget a command's --max-steps / --max-minutes set
BUDGET_SECTIONS = {"train-vqvae": ("train",), "train-prior": ("prior",), "tune-decoder": ("tune",)}
BUDGET_SECTIONS["run"] = ("train", "prior", "tune")
BUDGET_HELP = (
    "0 = none. A stage ends at whichever of its steps, epochs and minutes comes first and says "
    "which (steps: at the same point on any machine); given a larger budget it goes on"
)


def command_config(preset: str | None, run: str | None) -> Config:
    """A command's starting config: --config FILE (or a preset name), else the run's own
    config.toml where the run exists (so repeating a command on a run asks the same of it), else
    the defaults."""
    own = Path(run, "config.toml") if run else None
    base = preset or (own if own and own.is_file() else None)
    return Config.load(base) if base else Config()


# the train.* keys that serve every training stage: a prior stage takes these from its command
# line, the rest of `train` from the run (its budget and batch come from `prior`)
STAGE_TRAIN_KEYS = tuple(
    f"train.{k}"
    for k in ("accelerator", "devices", "num_nodes", "precision", "tensorboard", "save_rank_states")
)


def _in_scope(dotted: str, accepted: tuple[str, ...]) -> bool:
    return any(dotted == a or dotted.startswith(a + ".") for a in accepted)


def scope_help(accepted: tuple[str, ...]) -> str:
    """The settings a scope covers, for --help: 'eval.n_samples, eval.batch_size, ...' (each
    key of a flat section), 'prior.KEY, prior.KIND.KEY' (a section with sub-sections), or the
    keys named."""
    out = []
    for item in accepted:
        if "." in item:
            out.append(item)
            continue
        section = getattr(Config(), item)
        keys = list(members(section))
        if any(dataclasses.is_dataclass(v) for v in members(section).values()):
            out.append(f"{item}.KEY, {item}.KIND.KEY")
        else:
            out += [f"{item}.{k}" for k in keys]
    return ", ".join(out)


def check_scope(assignments: list[str], accepted: tuple[str, ...] | None, command: str) -> None:
    """Refuse `section.key=value` overrides that ``command`` would not read: ``accepted`` names
    the sections ("eval") and keys ("train.devices") it uses; None = every one, () = none."""
    if accepted is None:
        return
    for item in assignments:
        dotted = item.split("=", 1)[0].strip()
        if _in_scope(dotted, accepted):
            continue
        if not accepted:
            raise ConfigError(f"--{dotted}: {command} takes no config values; see its --help")
        names = ", ".join(a if "." in a else f"{a}.*" for a in accepted)
        raise ConfigError(f"--{dotted}: {command} does not use it (it takes {names})")


def assignments_from_args(args: list[str]) -> list[str]:
    """Command-line `--section.key VALUE` / `--section.key=VALUE` as `section.key=VALUE` strings."""
    out, i = [], 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or "." not in tok.split("=")[0]:
            raise ConfigError(f"unknown argument {tok!r} (config values are --SECTION.KEY VALUE)")
        if "=" in tok:
            out.append(tok[2:])
            i += 1
        elif i + 1 < len(args):
            out.append(f"{tok[2:]}={args[i + 1]}")
            i += 2
        else:
            raise ConfigError(f"{tok} needs a value")
    return out


def number_arg(low: float, high: float = math.inf, closed_low: bool = False):
    """Command-line type (argparse): a number in (low, high] ([low, high] with closed_low)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not ((value >= low if closed_low else value > low) and value <= high):
            bound = f"{'>=' if closed_low else '>'} {low:g}"
            bound += f" and <= {high:g}" if high < math.inf else ""
            raise argparse.ArgumentTypeError(f"{text!r}: must be a number {bound}")
        return value

    return parse
