"""Do synthetic slices train models? (TSTR: train on synthetic, test on real; issue 28.)

One small CNN reads a covariate from a slice: it classifies a categorical target (``diagnosis``,
or a continuous covariate cut at a threshold, ``cdr>=1``: CDR 0 against CDR 1 and 2) or regresses
a continuous one (``ventricle_fraction``). ``brainvq utility`` trains it (a) on N synthetic slices
drawn from the run's conditioned prior with the labels asked, (b) on the real training slices,
(c) on both, each from several seeds, and tests each on the real test brains. The same network
reads the samples of evaluate's conditioning fidelity (brainvq.evaluation.conditioning).

The network is the C2ST classifier's design (brainvq.evaluation.c2st: the image and its 3x3
Laplacian, four stride-2 convolutions with batch norm, mean and max pooled) with one output per
class, or one for a value; slices of 64 pixels or more are 2x2-averaged first (diagnosis and
anatomy are coarse; the finest texture is where samples and real slices differ most). Training
runs a fixed number of steps (never minutes): Adam with a one-cycle learning rate to 2e-3,
batch 32, classes weighted by the inverse of their share, a regressed value standardised; then
batch-norm statistics recomputed over the training set (as in the C2ST). Real slices are split
by brain: a training slice of a brain that also has test slices is dropped, so no test brain is
ever in training.

    from brainvq.evaluation.utility import utility_run
    result = utility_run("runs/x", target="cdr>=1", n=512)   # or `brainvq utility --run runs/x`
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainvq.data import load_data
from brainvq.data.anatomy import ANATOMY, anatomy
from brainvq.data.covariates import load_table
from brainvq.errors import DataError, RunError
from brainvq.evaluation.c2st import C2STClassifier, as_images, with_laplacian
from brainvq.io import atomic_write_text
from brainvq.nn.batchnorm import refresh_batch_norm
from brainvq.nn.fitting import fit_batches
from brainvq.priors import load_prior, pick_kind
from brainvq.priors.covariates import names as spec_names
from brainvq.progress import Progress
from brainvq.runs import Run, load_run
from brainvq.sampling import sample_images

STEPS = 600  # training steps of each classifier (a fixed budget, not minutes)
BATCH = 32
LR = 2e-3
SEEDS = 3
CHUNK = 32  # synthetic slices drawn per call (each chunk its own seed)
SETS = ("synthetic", "real", "both")


class SliceNet(C2STClassifier):
    """The C2ST classifier's network with ``outputs`` outputs (classes, or 1 for a value)."""

    def __init__(self, outputs: int, width: int = 16) -> None:
        super().__init__(width)
        self.head = nn.Linear(self.head.in_features, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised (B, 2, H, W) -> (B, outputs)."""
        return self.outputs(x)


@dataclass
class Target:
    """What the network reads: a covariate, classified (its levels, or below / at or above a
    threshold) or regressed."""

    name: str
    task: str  # "classify" or "regress"
    classes: list[str] = field(default_factory=list)
    threshold: float | None = None
    levels: list[str] = field(default_factory=list)  # a categorical covariate's levels

    def labels(self, raw: np.ndarray) -> np.ndarray:
        """Raw covariate values (a categorical one's level index; NaN unknown) -> class
        indices (float) or values, NaN where unknown."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.threshold is None:
            return raw.copy()
        return np.where(np.isnan(raw), np.nan, (raw >= self.threshold).astype(np.float64))

    def asked(self, raw: float):
        """A raw value as the prior takes it (a categorical covariate's level by name)."""
        return self.levels[int(raw)] if self.levels else float(raw)

    def text(self) -> str:
        """'cdr>=1' / 'diagnosis' / 'ventricle_fraction'."""
        return self.name if self.threshold is None else f"{self.name}>={self.threshold:g}"


def class_target(spec: dict, threshold: float | None = None) -> Target:
    """The Target of a covariate spec (brainvq.priors.covariates): a categorical one classified
    by level, a continuous one regressed, or classified below / at or above ``threshold``."""
    name = spec["name"]
    if spec["type"] == "categorical":
        if threshold is not None:
            raise RunError(
                f"--target {name}>={threshold:g}: {name} is categorical; give it without a "
                f"threshold (its levels: {', '.join(spec['levels'])})"
            )
        return Target(name, "classify", list(spec["levels"]), levels=list(spec["levels"]))
    if threshold is None:
        return Target(name, "regress")
    return Target(name, "classify", [f"{name}<{threshold:g}", f"{name}>={threshold:g}"], threshold)


def parse_target(text: str | None, specs: list[dict], source: str) -> Target:
    """--target NAME or NAME>=T (default: the prior's first condition) -> Target; RunError for a
    prior without conditions, a name it was not trained on, a malformed text."""
    if not specs:
        raise RunError(
            f"{source} was trained without conditions, so its samples carry no labels; train one "
            "with `brainvq train-prior --fresh --prior.conditions cdr,ventricle_fraction`"
        )
    text = specs[0]["name"] if text is None else text.replace(" ", "")
    found = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:>=(.+))?", text)
    threshold = None
    if found and found.group(2) is not None:
        try:
            threshold = float(found.group(2))
        except ValueError:
            found = None
    if not found or (threshold is not None and not math.isfinite(threshold)):
        raise RunError(f"--target {text}: write NAME or NAME>=NUMBER (e.g. cdr>=1)")
    by_name = {s["name"]: s for s in specs}
    if found.group(1) not in by_name:
        raise RunError(
            f"--target {found.group(1)}: {source} was trained on conditions {spec_names(specs)}; "
            "give one of those (synthetic slices are labelled with the values asked)"
        )
    return class_target(by_name[found.group(1)], threshold)


def real_covariates(run: Run, root: str, names: list[str], splits_wanted=("train", "test")):
    """{split: {"images": uint8 (N, S, S), "subjects": (N,), name: raw values (N,)}} of the
    run's data: table covariates from its subject table, anatomy measured from each slice."""
    dcfg = run.config.data
    splits, arrays = load_data(root, dcfg, progress=False)
    table = None
    if any(n not in ANATOMY for n in names):
        table = load_table(dcfg.subjects_table, root, splits.subjects, dcfg.subject_pattern)
    out = {}
    for split in splits_wanted:
        images, subjects = np.asarray(arrays[split]), np.asarray(splits.subjects[split])
        per_subject = table.slice_values(subjects) if table is not None else {}
        measured = anatomy(images) if any(n in ANATOMY for n in names) and len(images) else {}
        part = {"images": images, "subjects": subjects}
        for name in names:
            if name in ANATOMY:
                part[name] = measured.get(name, np.zeros(0))
            elif name in per_subject:
                part[name] = per_subject[name]
            else:
                raise DataError(
                    f"{root}: no subject table gives {name}; set data.subjects_table to the "
                    "table the prior was trained with"
                )
        out[split] = part
    return out


def outside(subjects: np.ndarray, test_subjects: np.ndarray) -> np.ndarray:
    """Mask of slices whose subject has no test slice (an unknown subject counts as its own)."""
    held = {s for s in np.asarray(test_subjects).tolist() if s}
    return np.array([not s or s not in held for s in np.asarray(subjects).tolist()], dtype=bool)


def prepare(images) -> torch.Tensor:
    """(N, H, W) uint8 or [0, 1] floats -> the network's (N, 2, h, w) input (2x2-averaged from
    64 pixels up)."""
    x = as_images(images)
    if x.shape[-1] >= 64:
        x = F.avg_pool2d(x, 2)
    return with_laplacian(x)


@dataclass
class Fitted:
    """A trained SliceNet with the standardisation it expects."""

    model: SliceNet
    mean: torch.Tensor
    std: torch.Tensor
    task: str
    y_mean: float = 0.0
    y_std: float = 1.0


def _loss_fn(y: torch.Tensor, task: str, classes: int):
    """The loss of a batch, and the (y mean, y std) of a regressed value."""
    if task == "regress":
        mu, sd = float(y.mean()), float(y.std()) if len(y) > 1 else 1.0
        sd = sd if sd > 0 else 1.0
        return (lambda out, t: F.mse_loss(out[:, 0], (t - mu) / sd)), mu, sd
    counts = torch.bincount(y.long(), minlength=classes).float()
    weight = torch.where(counts > 0, len(y) / (classes * counts.clamp(min=1)), 0.0)
    return (lambda out, t: F.cross_entropy(out, t.long(), weight=weight)), 0.0, 1.0


def fit(x: torch.Tensor, y, task: str, classes: int = 1, steps: int = STEPS, seed: int = 0,
        tick=None) -> Fitted:  # fmt: skip
    """A SliceNet trained from ``seed`` for ``steps`` steps on prepared x (N, 2, h, w) and y
    (class indices or values); ``tick()`` after each step."""
    y = torch.as_tensor(np.asarray(y), dtype=torch.float32)
    mean = x.mean((0, 2, 3), keepdim=True)
    std = x.std((0, 2, 3), keepdim=True) + 1e-6
    loss_fn, y_mean, y_std = _loss_fn(y, task, classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SliceNet(classes if task == "classify" else 1)
    gen = torch.Generator().manual_seed(seed)
    batches = (torch.randint(0, len(x), (min(BATCH, len(x)),), generator=gen) for _ in range(steps))

    def loss_of(idx):
        return loss_fn(model((x[idx] - mean) / std), y[idx])

    fit_batches(model, batches, steps, loss_of, LR, tick)
    model = refresh_batch_norm(model, x, lambda b: (b - mean) / std)
    return Fitted(model, mean, std, task, y_mean, y_std)


@torch.no_grad()
def predict(fitted: Fitted, x: torch.Tensor) -> np.ndarray:
    """Class indices (classify) or values (regress) of prepared slices."""
    out = torch.cat(
        [fitted.model((x[i : i + 128] - fitted.mean) / fitted.std) for i in range(0, len(x), 128)]
    )
    if fitted.task == "classify":
        return out.argmax(1).numpy().astype(np.float64)
    return (out[:, 0] * fitted.y_std + fitted.y_mean).numpy().astype(np.float64)


def pearson(a, b) -> float:
    """Pearson r of two sequences; 0.0 where either is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def score(task: str, pred: np.ndarray, y: np.ndarray) -> dict:
    """classify: accuracy and balanced accuracy (the mean of each class's); regress: Pearson r
    and mean absolute error."""
    if task == "regress":
        return {"r": pearson(pred, y), "mae": float(np.abs(pred - y).mean())}
    per_class = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(np.mean(per_class))}


def asked_values(target: Target, train_raw: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n raw values to ask for, drawn from the real training slices' values: for a classified
    target the same count per class (a class with no training slice is not asked)."""
    rng = np.random.default_rng(seed)
    known = train_raw[~np.isnan(train_raw)]
    if target.task == "regress":
        return rng.choice(known, n)
    labels = target.labels(known)
    present = [c for c in range(len(target.classes)) if (labels == c).any()]
    counts = np.full(len(present), n // len(present))
    counts[: n % len(present)] += 1
    out = [rng.choice(known[labels == c], k) for c, k in zip(present, counts, strict=True)]
    return rng.permutation(np.concatenate(out))


def draw_labelled(run: Run, prior, target: Target, raw: np.ndarray, seed: int, guidance: float,
                  progress: bool = False) -> np.ndarray:  # fmt: skip
    """Slices (N, S, S) in [0, 1] drawn from the prior with the raw values asked, in chunks."""
    images = []
    with Progress(len(raw), "drawing labelled slices", "slice", progress) as bar:
        for i in range(0, len(raw), CHUNK):
            part = [target.asked(v) for v in raw[i : i + CHUNK]]
            asked = {target.name: part}
            drawn = sample_images(run, prior, len(part), seed + i, covariates=asked,
                                  guidance=guidance)  # fmt: skip
            images.append(drawn["images"])
            bar.update(len(part))
    return np.concatenate(images)


def real_sets(run: Run, root: str, target: Target) -> dict:
    """The real training and test slices with a known label, by brain: {"train": (x, y,
    subjects), "test": (x, y, subjects), "dropped": training slices of test brains}."""
    real = real_covariates(run, root, [target.name])
    out: dict = {}
    for split in ("train", "test"):
        part = real[split]
        y = target.labels(part[target.name])
        keep = ~np.isnan(y)
        if split == "train":
            clear = outside(part["subjects"], real["test"]["subjects"])
            out["dropped"] = int((keep & ~clear).sum())
            keep &= clear
        if not keep.any():
            raise DataError(
                f"{root}: no {split} slice has a value of {target.name}; fill it in the subject "
                "table"
            )
        out[split] = (
            part["images"][keep],
            y[keep],
            part["subjects"][keep],
            part[target.name][keep],
        )
    return out


def tstr(sets: dict, test: tuple, target: Target, steps: int, seeds: int, progress: bool) -> dict:
    """{set name: scores averaged over seeds, their spread, and each seed's} of a classifier
    trained on each of ``sets`` ({name: (prepared x, y)}) and tested on ``test``."""
    classes = max(len(target.classes), 1)
    x_test, y_test = test
    out = {}
    with Progress(len(sets) * seeds * steps, "training classifiers", "step", progress) as bar:
        for name, (x, y) in sets.items():
            runs = []
            for s in range(seeds):
                model = fit(x, y, target.task, classes, steps, seed=s, tick=bar.update)
                runs.append(score(target.task, predict(model, x_test), y_test))
            out[name] = {"n_train": len(x), "per_seed": runs}
            for key in runs[0]:
                values = [r[key] for r in runs]
                out[name] |= {key: float(np.mean(values)), f"{key}_std": float(np.std(values))}
    return out


def utility_run(run_path: str | Path, kind: str | None = None, target: str | None = None,
                n: int | None = None, data: str | None = None, steps: int = STEPS,
                seeds: int = SEEDS, guidance: float = 1.0, seed: int = 0,
                progress: bool = False) -> dict:  # fmt: skip
    """What `brainvq utility` does (see the module docstring); writes RUN/utility.json."""
    if steps < 1 or seeds < 1 or (n is not None and n < 2) or guidance < 0:
        raise RunError(
            f"utility: steps {steps}, seeds {seeds}, -n {n}, guidance {guidance}: give "
            "steps >= 1, seeds >= 1, -n >= 2, guidance >= 0"
        )
    run = load_run(run_path)
    kind = pick_kind(run, kind)
    prior = load_prior(run, kind)
    tgt = parse_target(target, prior.covariates, prior.source or f"the {kind} prior")
    root = run.data_root(data)
    real = real_sets(run, root, tgt)
    x_real, y_real, subjects, raw = real["train"]
    n = n or len(x_real)
    asked = asked_values(tgt, raw, n, seed)
    synthetic = draw_labelled(run, prior, tgt, asked, seed, guidance, progress)
    x_syn, y_syn = prepare(synthetic), tgt.labels(asked)
    x_real = prepare(x_real)
    sets = {
        "synthetic": (x_syn, y_syn),
        "real": (x_real, y_real),
        "both": (torch.cat([x_syn, x_real]), np.concatenate([y_syn, y_real])),
    }
    x_test, y_test, test_subjects, _ = real["test"]
    result = {
        "kind": kind, "target": tgt.text(), "task": tgt.task, "classes": tgt.classes,
        "guidance": guidance, "steps": steps, "seeds": seeds, "seed": seed, "n_synthetic": n,
        "n_real_train": len(y_real), "train_brains": len(set(subjects.tolist())),
        "n_test": len(y_test), "test_brains": len(set(test_subjects.tolist())),
        "dropped_test_brain_slices": real["dropped"],
    }  # fmt: skip
    result["results"] = tstr(sets, (prepare(x_test), y_test), tgt, steps, seeds, progress)
    atomic_write_text(run.dir.path / "utility.json", json.dumps(result, indent=2) + "\n")
    return result


def format_utility(result: dict) -> str:
    """The console table: each training set's score on the real test brains."""
    keys = ("accuracy", "balanced_accuracy") if result["task"] == "classify" else ("r", "mae")
    head = f"{'trained on':<12}{'slices':>8}" + "".join(f"{k:>24}" for k in keys)
    lines = [
        f"{result['kind']} prior, target {result['target']} ({result['task']}), guidance "
        f"{result['guidance']:g}; tested on {result['n_test']} slices of {result['test_brains']} "
        f"real test brains; {result['steps']} steps x {result['seeds']} seeds",
        head,
    ]
    for name in SETS:
        r = result["results"][name]
        cells = "".join(f"{r[k]:>15.3f} +- {r[k + '_std']:.3f}" for k in keys)
        lines.append(f"{name:<12}{r['n_train']:>8}{cells}")
    return "\n".join(lines)
