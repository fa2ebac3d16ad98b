"""Which prior classes exist, how to build one, and where a run keeps and loads them
(RUN/prior-<kind>.safetensors: weights, the codebook it was trained on, the config TOML in the
file's metadata; loading runs no code).

The kinds are those of brainvq.config.kinds (the one registry); each kind's ``KindSpec`` names
its prior class as "module:Class", imported here when first asked for."""

from __future__ import annotations

import importlib
import json
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from brainvq.config import KINDS, PRIOR_KINDS, Config, PriorConfig, kinds_with
from brainvq.errors import RunError
from brainvq.priors.base import Prior
from brainvq.runs import Run, RunDir


def prior_class(kind: str) -> type[Prior]:
    """The prior class of a registered kind (its spec's "module:Class")."""
    if kind not in KINDS:
        raise RunError(f"prior kind {kind!r}: use one of {', '.join(PRIOR_KINDS)}")
    module, name = KINDS[kind].prior.split(":")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, Prior) and cls.kind == kind):
        raise RunError(f"prior kind {kind}: {KINDS[kind].prior} is no Prior with kind = {kind!r}")
    return cls


class PriorClasses(Mapping):
    """{kind: prior class} of every registered kind (read when used)."""

    def __getitem__(self, kind: str) -> type[Prior]:
        if kind not in KINDS:
            raise KeyError(kind)
        return prior_class(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in KINDS

    def __iter__(self) -> Iterator[str]:
        return iter(KINDS)

    def __len__(self) -> int:
        return len(KINDS)


PRIOR_CLASSES = PriorClasses()


def conditioning_kinds() -> str:
    """'maskgit or transformer': the kinds that take conditions, for messages."""
    return " or ".join(sorted(kinds_with(conditions=True), reverse=True))


def build_prior(
    pcfg: PriorConfig, codebook: torch.Tensor, code_size: int, conditions=(), covariates=()
) -> Prior:
    """A fresh prior of kind pcfg.kind (built from prior.<kind>) over the given codebook (K, D)
    and code-map side; ``conditions``: of brainvq.priors.base.CONDITIONS, ``covariates``: specs
    (brainvq.priors.covariates) (maskgit, transformer)."""
    cls = prior_class(pcfg.kind)
    if not conditions and not covariates:
        return cls(pcfg.settings(), codebook, code_size)
    if not cls.can_condition:
        what = ", ".join([*conditions, *(c["name"] for c in covariates)])
        raise RunError(
            f"a {pcfg.kind} prior cannot be conditioned on {what}; use a {conditioning_kinds()} "
            "prior, or prior.levels off and prior.conditions []"
        )
    return cls(pcfg.settings(), codebook, code_size, conditions, covariates)


def prior_path(run: RunDir, kind: str = "dcgan") -> Path:
    """RUN/prior-<kind>.safetensors."""
    return run.path / f"prior-{kind}.safetensors"


def load_prior_file(path: str | Path) -> Prior:
    """A prior from its safetensors file (kind, config and code size from the metadata)."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no prior here; train one with `brainvq train-prior`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    kind = meta.get("kind", "").removeprefix("prior-")
    if kind not in PRIOR_CLASSES or "config" not in meta or "code_size" not in meta:
        raise RunError(f"{path}: not a brainvq prior file; retrain with --fresh")
    cfg = Config.from_dict(tomllib.loads(meta["config"]), source=str(path))
    cfg.prior.kind = kind
    state = load_file(str(path))
    if "codebook" not in state:
        raise RunError(f"{path}: the prior carries no codebook; retrain with --fresh")
    # files written without conditions (all before levels existed) load unconditioned
    conditions = [c for c in meta.get("conditions", "").split(",") if c]
    try:
        covariates = json.loads(meta.get("covariates", "[]"))  # none before prior.conditions
        code_size = int(meta["code_size"])
        prior = build_prior(cfg.prior, state["codebook"], code_size, conditions, covariates)
        prior.level_info = json.loads(meta.get("levels", "{}"))
        prior.source = str(path)
    except (RunError, ValueError, KeyError, TypeError):
        raise RunError(
            f"{path}: unreadable conditions in its metadata; retrain with --fresh"
        ) from None
    expected = prior.state_dict()
    bad = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if bad:
        raise RunError(
            f"{path}: weights do not fit the config in its metadata ({bad[0]}); retrain with --fresh"
        )
    prior.load_state_dict(state)
    prior.sampling = (cfg.prior.sampling_temperature(), cfg.prior.top_k)
    return prior.eval()


def load_prior(run: Run, kind: str = "dcgan") -> Prior:
    """The trained prior of a run (RUN/prior-<kind>.safetensors), checked against its codebook."""
    prior_class(kind)  # a registered kind, or RunError
    prior = load_prior_file(prior_path(run.dir, kind))
    if prior.kind != kind:
        raise RunError(f"{prior_path(run.dir, kind)}: holds a {prior.kind} prior, not {kind}")
    emb = run.vqvae.quantizer.embedding.detach().float().cpu()
    if prior.codebook.shape != emb.shape or not torch.allclose(prior.codebook, emb):
        raise RunError(
            f"{prior_path(run.dir, kind)}: trained on another VQ-VAE codebook than "
            f"{run.dir.vqvae}; retrain the prior with --fresh"
        )
    return prior


def trained_kinds(run: RunDir) -> list[str]:
    """The prior kinds a run folder holds weights for, in PRIOR_KINDS order."""
    return [k for k in PRIOR_KINDS if prior_path(run, k).exists()]


def pick_kind(run: Run, kind: str | None = None, likelihood: bool = False) -> str:
    """``kind`` if given, else the run's configured prior if trained, else a trained one (with
    ``likelihood``: one with an exact likelihood, the last registered first: the transformer
    before the pixelcnn); RunError if there is none."""
    if kind:
        return kind
    have = trained_kinds(run.dir)
    if likelihood:
        have = [k for k in reversed(kinds_with(likelihood=True)) if k in have]
    if not have:
        what, how = ("autoregressive ", " --kind transformer") if likelihood else ("", "")
        raise RunError(
            f"{run.dir.path}: no trained {what}prior; run `brainvq train-prior{how}` first"
        )
    return run.config.prior.kind if run.config.prior.kind in have else have[0]
