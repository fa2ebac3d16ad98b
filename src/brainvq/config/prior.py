"""The prior section: which kind, its budget and sampling, and one sub-section per registered kind
(``prior.<kind>``, the settings class of its spec; brainvq.config.kinds)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from brainvq.config.checks import need, non_negative, one_of, positive
from brainvq.config.kinds import KINDS, PRIOR_KINDS, kind_spec


@dataclass(eq=False)
class PriorConfig:
    """A prior over code maps (brainvq.priors): which kind, its budget and sampling, and each
    kind's own settings in its sub-section: ``prior.dcgan`` ... one attribute per registered kind
    (set when the section is made, so not dataclass fields: ``kind_sections()`` lists them)."""

    # which prior `brainvq run` and `train-prior` fit
    kind: str = "maskgit"
    batch_size: int = 0  # code maps per step; 0 = the kind's own (its KindSpec)
    # budget: the stage ends at whichever of these comes first; 0 = no limit of that kind
    max_epochs: int = 1000
    max_steps: int = 0  # 0 = the kind's own, prior.KIND.step_budget
    max_minutes: float = 30.0  # wall-clock cap of the stage
    seed: int = 0
    # sampling: temperature (0 = the kind's own, its spec's) and top-k (0 = all codes)
    temperature: float = 0.0
    top_k: int = 0
    # condition maskgit and transformer priors on each slice's axial level (slice_Z in its name,
    # normalised per subject): "auto" where the training slices' levels pass the order check
    # (neighbouring Z alike; brainvq.data.levels), "on" (an error where they do not), "off"
    levels: str = "auto"
    # with levels, also condition on the code map of the slice below, so whole stacks can be drawn
    slice_below: bool = True
    # share of training maps shown without the slice below: what single slices are drawn from
    below_dropout: float = 0.5
    # a prior file of the same kind and codebook (e.g. an unconditioned RUN/prior-maskgit
    # .safetensors) whose weights a fresh stage starts from; conditions it lacks start untrained
    init: str = ""
    # covariates a maskgit or transformer prior is conditioned on (docs/conditions.md): columns
    # of data.subjects_table (names lower-cased, e.g. "cdr", "age") and the anatomy measured from
    # each slice ("brain_fraction", "ventricle_fraction"); [] = none
    conditions: list[str] = field(default_factory=list)
    # share of training maps shown with all their covariates unknown (and, independently, each
    # covariate unknown in this share): one prior then also samples unconditioned, and
    # classifier-free guidance (`brainvq sample --guidance G`) has its unconditioned path
    condition_dropout: float = 0.1

    def __post_init__(self) -> None:
        for name, spec in KINDS.items():
            if not isinstance(self.__dict__.get(name), spec.settings):
                setattr(self, name, spec.settings())

    def kind_sections(self) -> dict[str, Any]:
        """{kind: its settings section} of every registered kind, in registry order."""
        for name, spec in KINDS.items():  # a kind registered after this section was made
            if name not in self.__dict__:
                setattr(self, name, spec.settings())
        return {name: getattr(self, name) for name in KINDS}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return vars(self) == vars(other)

    def validate(self, prefix: str = "prior") -> None:
        """Raise ConfigError for a value that would fail later (every kind's section too)."""
        one_of(self, prefix, "kind", PRIOR_KINDS)
        one_of(self, prefix, "levels", ("auto", "on", "off"))
        dropout = self.below_dropout
        need(0 <= dropout < 1, f"{prefix}.below_dropout", dropout, "must be in [0, 1)")
        dropout = self.condition_dropout
        need(0 <= dropout < 1, f"{prefix}.condition_dropout", dropout, "must be in [0, 1)")
        for name in self.conditions:
            need(
                bool(re.fullmatch(r"[a-z0-9_]+", name)) and name not in ("level", "below"),
                f"{prefix}.conditions",
                self.conditions,
                "name covariates in lower case (a table column as brainvq names it, e.g. "
                "'cdr', or 'ventricle_fraction'); the axial level is prior.levels",
            )
        need(
            len(set(self.conditions)) == len(self.conditions),
            f"{prefix}.conditions",
            self.conditions,
            "names a covariate twice",
        )
        positive(self, prefix, "max_epochs")
        non_negative(self, prefix, "batch_size", "max_steps", "max_minutes", "temperature", "top_k")
        for kind, section in self.kind_sections().items():
            section.validate(f"{prefix}.{kind}")

    def settings(self) -> Any:
        """The section of the configured kind (prior.<kind>)."""
        return self.kind_sections()[self.kind]

    def sampling_temperature(self) -> float:
        """The temperature samples are drawn at by default: prior.temperature, or if that is 0
        the kind's own (its KindSpec)."""
        return self.temperature or kind_spec(self.kind).temperature

    def step_budget(self) -> int:
        """The stage's step budget: prior.max_steps, or if that is 0 the kind's own
        (prior.KIND.step_budget; 0 = none)."""
        return self.max_steps or self.settings().step_budget

    def step_batch_size(self) -> int:
        """Code maps per step: prior.batch_size, or if that is 0 the kind's own."""
        return self.batch_size or kind_spec(self.kind).batch_size
