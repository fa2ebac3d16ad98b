"""The covariates a prior is trained on (``prior.conditions``): each training and validation
slice's values, from the run's subject table (brainvq.data.covariates) and the anatomy measured
from the slice (brainvq.data.anatomy), with the specs the prior keeps
(brainvq.priors.covariates)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open

from brainvq.config import Config
from brainvq.data import load_data
from brainvq.data.anatomy import ANATOMY, anatomy
from brainvq.data.covariates import load_table
from brainvq.errors import ConfigError, DataError, RunError
from brainvq.priors import PRIOR_CLASSES
from brainvq.priors.covariates import covariate_specs, standardise
from brainvq.runs import Run

SPLITS_FITTED = ("train", "validate")


def available_covariates(table) -> dict[str, tuple]:
    """name -> (type, levels, per) of every covariate a prior can be conditioned on."""
    out: dict[str, tuple] = {}
    if table is not None:
        out |= {n: (c.kind, c.levels, "subject") for n, c in table.covariates.items()}
    return out | {n: ("continuous", (), "slice") for n in ANATOMY}


def covariate_conditions(run: Run, cfg: Config, kind: str, data: str) -> dict:
    """{"specs": the prior's covariate specs, "values": {split: (N, C) float32 network inputs
    (NaN unknown)} of train and validate} for prior.conditions ({"specs": []} without any);
    ConfigError for a kind that takes none or a name that is no covariate of the data."""
    names = list(cfg.prior.conditions)
    if not names:
        return {"specs": [], "values": {}}
    if not PRIOR_CLASSES[kind].can_condition:
        raise ConfigError(
            f"prior.conditions = {names}: a {kind} prior takes no covariates; use --kind "
            "maskgit or transformer, or set prior.conditions []"
        )
    dcfg = run.config.data
    splits, arrays = load_data(data, dcfg, progress=False)
    table = load_table(dcfg.subjects_table, data, splits.subjects, dcfg.subject_pattern)
    have = available_covariates(table)
    for name in names:
        if name not in have:
            where = f"the columns of {table.path}" if table is not None else "no subject table"
            raise ConfigError(
                f"prior.conditions: {name!r} is no covariate of {data} (it has "
                f"{', '.join(have)}: {where}, and the anatomy measured from each slice); "
                "set data.subjects_table at train-vqvae for other columns"
            )
    raw = {}
    for split in SPLITS_FITTED:
        per_subject = table.slice_values(splits.subjects[split]) if table is not None else {}
        measured = anatomy(arrays[split]) if any(n in ANATOMY for n in names) else {}
        columns = [measured[n] if n in ANATOMY else per_subject[n] for n in names]
        raw[split] = np.stack(columns, axis=1) if len(arrays[split]) else np.zeros((0, len(names)))
    for i, name in enumerate(names):
        if np.isnan(raw["train"][:, i]).all():
            raise DataError(
                f"{data}: no training slice has a value of {name}; fill it in the subject table "
                "or leave it out of prior.conditions"
            )
    specs = covariate_specs(
        {n: raw["train"][:, i] for i, n in enumerate(names)}, {n: have[n] for n in names}
    )
    return {"specs": specs, "values": {k: standardise(specs, v) for k, v in raw.items()}}


def check_same_covariates(weights: Path, names: list[str]) -> None:
    """Refuse to reuse or continue a prior file trained on other covariates than ``names``."""
    with safe_open(str(weights), framework="pt") as f:
        specs = json.loads((f.metadata() or {}).get("covariates", "[]"))
    had = [s["name"] for s in specs]
    if had != list(names):
        raise RunError(
            f"{weights}: trained on conditions {', '.join(had) or 'none'}, but prior.conditions "
            f"is {list(names)}; add --fresh to train it anew on those"
        )
