"""The covariates a prior is conditioned on (``prior.conditions``): what it records of each, and
values asked for at sampling turned into the network's inputs.

A prior's ``covariates`` is a list of specs, saved in its file's metadata:
``{"name", "type": "continuous", "mean", "std", "per", "range"}`` (values standardised with the
training slices' mean and standard deviation) or ``{"name", "type": "categorical", "levels",
"per"}`` (a level given by name, or by its index). ``per`` is "subject" (a table column) or
"slice" (anatomy measured from the slice, brainvq.data.anatomy).

    specs = covariate_specs({"cdr": cdr_of_train_slices}, {"cdr": ("continuous", ())})
    x = encode(specs, {"cdr": 1}, n=16)        # (16, 1) float tensor for the network
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from brainvq.errors import RunError


def covariate_specs(values: dict[str, np.ndarray], kinds: dict[str, tuple]) -> list[dict]:
    """Specs from each covariate's training values (NaN unknown) and its (type, levels, per)."""
    specs = []
    for name, v in values.items():
        kind, levels, per = kinds[name]
        spec: dict = {"name": name, "type": kind, "per": per}
        known = np.asarray(v, dtype=np.float64)
        known = known[~np.isnan(known)]
        if kind == "categorical":
            spec["levels"] = list(levels)
        else:
            std = float(known.std()) if known.size else 1.0
            spec["mean"] = float(known.mean()) if known.size else 0.0
            spec["std"] = std if std > 0 else 1.0
            spec["range"] = [float(known.min()), float(known.max())] if known.size else []
        specs.append(spec)
    return specs


def network_kinds(specs: list[dict]) -> tuple[int, ...]:
    """What CovariateEmbedding takes: 0 per continuous covariate, the levels per categorical."""
    return tuple(0 if s["type"] == "continuous" else len(s["levels"]) for s in specs)


def standardise(specs: list[dict], raw: np.ndarray) -> np.ndarray:
    """Raw per-slice values (N, C) (categorical: level indices; NaN unknown) -> network inputs."""
    out = np.array(raw, dtype=np.float32, copy=True).reshape(len(raw), len(specs))
    for i, s in enumerate(specs):
        if s["type"] == "continuous":
            out[:, i] = (out[:, i] - s["mean"]) / s["std"]
    return out


def names(specs: list[dict]) -> str:
    """'cdr, ventricle_fraction' (or 'none')."""
    return ", ".join(s["name"] for s in specs) or "none"


def _value(spec: dict, value, where: str) -> float:
    """One asked value as the raw float a slice carries (a level's index for categorical)."""
    if spec["type"] == "categorical":
        levels = spec["levels"]
        if str(value) in levels:
            return float(levels.index(str(value)))
        raise RunError(
            f"{where}: {spec['name']} is categorical; ask for one of {', '.join(levels)}"
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise RunError(f"{where}: {spec['name']} takes a number (e.g. {spec['mean']:.3g})")
    return number


def encode(specs: list[dict], asked: dict, n: int, source: str = "this prior") -> torch.Tensor:
    """Values asked for n maps ({name: a value for all, or n values}; the rest unknown) as the
    network's (n, C) inputs; RunError naming the prior's conditions for a name it lacks."""
    known = {s["name"]: i for i, s in enumerate(specs)}
    for name in asked:
        if name not in known and not specs:
            raise RunError(
                f"--condition {name}: {source} was trained without conditions; train one with "
                f"`brainvq train-prior --fresh --prior.conditions {name}`"
            )
        if name not in known:
            raise RunError(
                f"--condition {name}: {source} was trained on conditions {names(specs)}; ask for "
                "those (or train a prior with prior.conditions naming it)"
            )
    raw = np.full((n, len(specs)), np.nan, dtype=np.float32)
    for name, value in asked.items():
        spec, where = specs[known[name]], f"--condition {name}={value}"
        vals = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * n
        if len(vals) != n:
            raise ValueError(f"{len(vals)} values of {name} for {n} maps")
        raw[:, known[name]] = [_value(spec, v, where) for v in vals]
    return torch.from_numpy(standardise(specs, raw))


def parse_conditions(texts: Iterable[str] | None) -> dict[str, str]:
    """--condition NAME=VALUE texts -> {name: value text}; RunError for a malformed one."""
    out: dict[str, str] = {}
    for text in texts or ():
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise RunError(f"--condition {text}: write it as NAME=VALUE (e.g. cdr=1)")
        if name in out:
            raise RunError(f"--condition {name}: given twice; give each covariate once")
        out[name] = value
    return out


def outside_range(specs: list[dict], asked: dict) -> list[str]:
    """A line for each asked continuous value outside the training slices' range."""
    lines = []
    for spec in specs:
        value, span = asked.get(spec["name"]), spec.get("range")
        if value is None or spec["type"] != "continuous" or not span:
            continue
        number = _value(spec, value, f"--condition {spec['name']}={value}")
        if not span[0] <= number <= span[1]:
            lines.append(
                f"--condition {spec['name']}={value}: outside the training slices' range "
                f"{span[0]:.3g} .. {span[1]:.3g}; the prior extrapolates"
            )
    return lines
