"""What a prior kind is, without torch: ``KindSpec`` and the registry of kinds (``KINDS``).

Each kind's module (brainvq/config/kinds/<kind>.py) holds its settings (the ``prior.<kind>``
section) and its ``SPEC``; brainvq/config/kinds/__init__.py registers the built-in ones. The
config, the command line, the report and the verdict read the kinds from here, and
brainvq.priors.registry imports each kind's prior class from the module its spec names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from brainvq.errors import ConfigError

TRAININGS = ("code_prediction", "gan")  # the training paths of brainvq.training.prior


@dataclass(frozen=True)
class KindSpec:
    """One prior kind: its name and title, its settings class (the ``prior.<name>`` section), the
    prior class that implements it, its defaults and what it can do."""

    name: str  # as in prior.kind, --kind and RUN/prior-<name>.safetensors
    title: str  # as the report and the verdict write it ("MaskGIT")
    settings: type  # the dataclass of its prior.<name> section (has validate(prefix))
    prior: str  # its prior class, "module:Class" (a brainvq.priors.base.Prior)
    temperature: float  # sampling temperature when prior.temperature is 0
    batch_size: int  # code maps per step when prior.batch_size is 0
    # how brainvq.training.prior fits it: "code_prediction" (brainvq.training.code_prior: the
    # prior's loss(codes), the weights with the best validation bits per code kept) or "gan"
    # (brainvq.training.dcgan: a generator against a discriminator)
    training: str = "code_prediction"
    updates_per_step: int = 1  # optimizer steps Lightning counts per step of the budget
    losses: tuple[str, ...] = ("bpc", "val_bpc")  # logged values the stage reports
    loss_unit: str = "bits/code"  # of its validation loss, as describe() writes it
    curves: str = "training and validation bits per code"  # what its training-curve figure shows
    likelihood: bool = False  # exact log-likelihood (score, bits per code of real maps)
    conditions: bool = False  # can be conditioned on levels, the slice below and covariates
    variations: bool = False  # can redraw part of a given map (sample --like, decoder tuning)

    def __post_init__(self) -> None:
        if self.training not in TRAININGS:
            raise ConfigError(
                f"prior kind {self.name}: training {self.training!r}: use {TRAININGS}"
            )
        if ":" not in self.prior:
            raise ConfigError(f"prior kind {self.name}: prior {self.prior!r}: write module:Class")


KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    """Add a kind to the registry (its prior.<name> section then exists in every new config)."""
    if spec.name in KINDS and KINDS[spec.name] != spec:
        raise ConfigError(f"prior kind {spec.name!r} is registered already")
    if not spec.name.isidentifier():
        raise ConfigError(f"prior kind {spec.name!r}: name it like a Python identifier")
    KINDS[spec.name] = spec
    return spec


def kind_spec(name: str) -> KindSpec:
    """The spec of a registered kind; ConfigError naming the kinds there are."""
    if name not in KINDS:
        raise ConfigError(f"prior kind {name!r}: use one of {', '.join(KINDS)}")
    return KINDS[name]


def kinds_with(**flags: Any) -> tuple[str, ...]:
    """The kinds whose spec has these values, in registry order (``likelihood=True``)."""
    return tuple(k for k, s in KINDS.items() if all(getattr(s, f) == v for f, v in flags.items()))


class KindNames(Sequence):
    """The registered kind names, read when used (so kinds registered later are in it)."""

    def __getitem__(self, i):
        return tuple(KINDS)[i]

    def __len__(self) -> int:
        return len(KINDS)

    def __repr__(self) -> str:
        return repr(tuple(KINDS))


class KindColumn(Mapping):
    """{kind: one field of its spec}, read when used."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __getitem__(self, kind: str) -> Any:
        return getattr(KINDS[kind], self.field)

    def __iter__(self) -> Iterator[str]:
        return iter(KINDS)

    def __len__(self) -> int:
        return len(KINDS)

    def __repr__(self) -> str:
        return repr(dict(self))
