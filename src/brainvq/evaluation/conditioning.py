"""Conditioning fidelity: do a conditioned prior's samples have what was asked? (issue 28.)

For each covariate of a prior trained with ``prior.conditions`` (the others left unknown):

- **anatomy** (brain_fraction, ventricle_fraction): ``eval.condition_samples`` samples spread
  over ``eval.condition_values`` values evenly between the 5th and 95th percentile of the real
  training slices' values, each measured by the rule the training slices were
  (brainvq.data.anatomy); the Pearson r of asked against measured, and the mean absolute error.
- **a table covariate** (diagnosis, cdr): a small CNN (brainvq.evaluation.utility) trained on the
  real training slices to tell the covariate's classes apart (a categorical one's levels; a
  continuous one cut at the training slices' median, so CDR reads as 0 against >= 1), scored on
  the real test slices (balanced accuracy: each class counts alike); then ``condition_samples``
  samples, the same count asked for each class, and the share it labels as asked. The ratio of
  the two says how far samples carry the class as well as real slices do (1 = as well).

Samples are drawn with ``eval.condition_guidance``. An unconditioned prior has no such section.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from brainvq.config import EvalConfig
from brainvq.data.anatomy import ANATOMY, anatomy
from brainvq.evaluation.utility import (
    Target,
    class_target,
    fit,
    outside,
    pearson,
    predict,
    prepare,
    real_covariates,
    score,
)
from brainvq.progress import Progress
from brainvq.runs import Run
from brainvq.sampling import sample_images

Draw = Callable[[dict, int], np.ndarray]  # ({name: values asked, one per sample}, seed) -> images


def split_point(values: np.ndarray) -> float:
    """Where a continuous table covariate is cut into two classes: the median of the training
    values, or, where no value lies below it, the smallest value above the lowest."""
    known = np.sort(values[~np.isnan(values)])
    t = float(np.median(known))
    if not (known < t).any():
        above = known[known > known[0]]
        t = float(above[0]) if len(above) else t
    return t


def anatomy_fidelity(draw: Draw, name: str, train_values: np.ndarray, samples: int,
                     values: int, seed: int = 0) -> dict:  # fmt: skip
    """Asked against measured ``name`` over samples spread over values between the training
    values' 5th and 95th percentile."""
    low, high = np.percentile(train_values[~np.isnan(train_values)], [5, 95])
    grid = np.linspace(low, high, values)
    per = np.diff(np.linspace(0, samples, values + 1).round().astype(int))
    asked, measured = [], []
    for i, (v, k) in enumerate(zip(grid, per, strict=True)):
        if k:
            images = draw({name: [float(v)] * int(k)}, seed + i)
            asked += [float(v)] * int(k)
            measured += anatomy(images)[name].tolist()
    asked, measured = np.array(asked), np.array(measured)
    return {
        "measure": "anatomy",
        "samples": len(asked),
        "values": [float(v) for v in grid],
        "measured_mean": [float(measured[asked == v].mean()) for v in grid if (asked == v).any()],
        "r": pearson(asked, measured),
        "mae": float(np.abs(asked - measured).mean()),
    }


def class_fidelity(draw: Draw, target: Target, real: dict, samples: int, steps: int,
                   seed: int = 0) -> dict:  # fmt: skip
    """The share of samples asked for each class that a classifier trained on the real training
    slices labels as asked, beside its balanced accuracy on the real test slices. ``real``:
    real_covariates' {"train": ..., "test": ...}."""
    train, test = real["train"], real["test"]
    y = target.labels(train[target.name])
    keep = ~np.isnan(y) & outside(train["subjects"], test["subjects"])
    model = fit(prepare(train["images"][keep]), y[keep], "classify", len(target.classes),
                steps, seed)  # fmt: skip
    y_test = target.labels(test[target.name])
    known = ~np.isnan(y_test)
    on_test = score("classify", predict(model, prepare(test["images"][known])), y_test[known])
    present = [c for c in range(len(target.classes)) if (y[keep] == c).any()]
    per = np.diff(np.linspace(0, samples, len(present) + 1).round().astype(int))
    raw_train = train[target.name][keep]
    per_class, asked_text = [], []
    for i, (c, k) in enumerate(zip(present, per, strict=True)):
        raw = float(np.median(raw_train[y[keep] == c]))  # the class's typical value
        asked = target.asked(raw)
        images = draw({target.name: [asked] * int(k)}, seed + i)
        per_class.append(float((predict(model, prepare(images)) == c).mean()))
        asked_text.append(f"{target.name}={asked}" if target.levels else f"{target.name}={raw:g}")
    sample_accuracy = float(np.mean(per_class))
    test_accuracy = on_test["balanced_accuracy"]
    return {
        "measure": "classifier",
        "classes": [target.classes[c] for c in present],
        "asked": asked_text,
        "samples": int(per.sum()),
        "per_class": per_class,
        "sample_accuracy": sample_accuracy,
        "test_accuracy": test_accuracy,
        "ratio": sample_accuracy / test_accuracy if test_accuracy > 0 else 0.0,
    }


def fidelity(draw: Draw, specs: list[dict], real: dict, samples: int, values: int, steps: int,
             seed: int = 0, progress: bool = False) -> dict:  # fmt: skip
    """{covariate: anatomy_fidelity or class_fidelity} of every covariate spec."""
    out = {}
    with Progress(len(specs), "conditioning fidelity", "covariate", progress) as bar:
        for spec in specs:
            name = spec["name"]
            if name in ANATOMY:
                out[name] = anatomy_fidelity(draw, name, real["train"][name], samples, values, seed)
            else:
                cut = None if spec["type"] == "categorical" else split_point(real["train"][name])
                target = class_target(spec, cut)
                out[name] = class_fidelity(draw, target, real, samples, steps, seed)
            bar.update()
    return out


def conditioning_fidelity(run: Run, prior, root: str, ev: EvalConfig,
                          progress: bool = False) -> dict | None:  # fmt: skip
    """evaluate's conditioning section of a prior's samples (None for an unconditioned prior)."""
    if not prior.covariates:
        return None
    names = [s["name"] for s in prior.covariates]
    real = real_covariates(run, root, names)

    def draw(asked: dict, seed: int) -> np.ndarray:
        n = len(next(iter(asked.values())))
        drawn = sample_images(run, prior, n, seed, covariates=asked, guidance=ev.condition_guidance)
        return drawn["images"]

    specs = prior.covariates
    out = fidelity(draw, specs, real, ev.condition_samples, ev.condition_values,
                   ev.condition_steps, ev.seed, progress)  # fmt: skip
    return {"guidance": ev.condition_guidance, "covariates": out}
