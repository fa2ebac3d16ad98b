"""What a measure is, and the registry `evaluate` loops over.

A measure is one object: its name, the metrics.json section it writes to ("vqvae": the VQ-VAE on
the test split; "samples": each prior's samples), where its keys go in that section (``order``),
whether the config turns it on (``enabled``), ``compute(context) -> Result`` and how it reads:
its rows of the plain-text table, the words under that table, its rows of the HTML report and
optional warnings (the verdict adds them after its own). Rows carry an order so that a measure
places its lines among the others' without touching them.

A new measure is one file in brainvq/evaluation/measures/ (found and imported by that package)
that ends with ``register(MyMeasure())``; a test may register one for the test's duration:

    class Brightness(Measure):
        name, section, order = "brightness", "samples", 35
        def compute(self, ctx):
            return Result({"brightness": float(ctx.images.mean())})
        def table_rows(self, values):
            return [Row(35, "mean brightness", f"{values['brightness']:.3f}")] if values else []
    register(Brightness())

Standard library only (the verdict, which `brainvq --help` imports, reads the registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainvq.errors import ConfigError

SECTIONS = ("vqvae", "samples")


@dataclass(frozen=True)
class Row:
    """A line of a plain-text table (label, value), or a words line under it (label "")."""

    order: float
    label: str
    value: str


@dataclass(frozen=True)
class ReportRow:
    """A row of the report's table: label, value (HTML), the real slices' value (HTML) and
    what it means (plain text)."""

    order: float
    label: str
    value: str
    real: str
    what: str


@dataclass
class Result:
    """What a measure computed: ``values``, the keys it adds to its metrics.json section in their
    order, and ``per_item``, arrays per scored image that later measures and figures read (not
    written)."""

    values: dict[str, Any] = field(default_factory=dict)
    per_item: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What a measure gets: the run, the images scored (samples, or the test split's
    reconstructions) and their codes, the real slices of the reference split (uint8), the
    training slices, the splits, and what earlier measures of the section computed."""

    run: Any  # brainvq.runs.Run
    section: str
    images: Any  # (N, S, S) float32 in [0, 1]
    codes: Any  # their code maps (N, h, w)
    real: Any  # (M, S, S) uint8: the reference split's slices
    train: Any  # (T, S, S) uint8
    splits: Any  # brainvq.data.Splits
    reference: str = "test"
    root: Path | None = None
    progress: bool = False
    kind: str | None = None  # the prior that drew the samples
    prior: Any = None
    drawn: dict | None = None  # brainvq.sampling's dict of the samples
    real_codes: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    per_item: dict[str, Any] = field(default_factory=dict)

    @property
    def ev(self):
        """The run's eval settings (with this evaluation's overrides)."""
        return self.run.config.eval


class Measure:
    """One measure (see the module's docstring); subclasses set name, section and order and
    implement compute, and the rows they show."""

    name: str = ""
    section: str = "samples"
    order: float = 100.0  # where its keys go in the section (lower first)

    def enabled(self, ev) -> bool:
        """Whether the eval settings ``ev`` turn it on (default: always)."""
        return True

    def compute(self, ctx: Context) -> Result:
        """Score ``ctx``; the keys it returns join the section after earlier measures'."""
        raise NotImplementedError

    def table_rows(self, values: dict) -> list[Row]:
        """Its rows of the plain-text table of a section's values ([] where it did not run)."""
        return []

    def table_words(self, values: dict) -> list[Row]:
        """Plain-words lines under that table."""
        return []

    def report_rows(self, values: dict) -> list[ReportRow]:
        """Its rows of the report's table of the section."""
        return []

    def warnings(self, values: dict) -> list[str]:
        """Weak results of its own, one line each (the verdict's are in brainvq.reporting.verdict)."""
        return []


REGISTRY: dict[str, Measure] = {}


def register(measure: Measure) -> Measure:
    """Add a measure (the same section and name replaces the one registered before)."""
    if measure.section not in SECTIONS or not measure.name:
        raise ConfigError(
            f"measure {type(measure).__name__}: needs a name and a section in {SECTIONS}"
        )
    REGISTRY[f"{measure.section}/{measure.name}"] = measure
    return measure


def unregister(measure: Measure) -> None:
    """Take a registered measure out again (tests)."""
    REGISTRY.pop(f"{measure.section}/{measure.name}", None)


def registered(section: str) -> list[Measure]:
    """The registered measures of a section, in their order."""
    return sorted((m for m in REGISTRY.values() if m.section == section), key=lambda m: m.order)


def run_measures(ctx: Context) -> dict[str, Any]:
    """Compute every enabled measure of ctx.section in order; their values, one dict."""
    for m in registered(ctx.section):
        if m.enabled(ctx.ev):
            result = m.compute(ctx)
            ctx.values.update(result.values)
            ctx.per_item.update(result.per_item)
    return ctx.values


def table_rows(section: str, values: dict) -> tuple[list[Row], list[Row]]:
    """(the table rows, the words lines) of a section's values, from every measure, in order."""
    rows, words = [], []
    for m in registered(section):
        rows += m.table_rows(values)
        words += m.table_words(values)
    order = lambda r: r.order  # noqa: E731
    return sorted(rows, key=order), sorted(words, key=order)


def report_rows(section: str, values: dict) -> list[ReportRow]:
    """The report's rows of a section's values, from every measure, in order."""
    rows = [r for m in registered(section) for r in m.report_rows(values)]
    return sorted(rows, key=lambda r: r.order)


def measure_warnings(section: str, values: dict) -> list[str]:
    """The measures' own warnings on a section's values."""
    return [w for m in registered(section) for w in m.warnings(values)]


def keyed_rows(values: dict, spec: list[tuple]) -> list[ReportRow]:
    """A report row per (order, label, key, format, real, meaning) whose key ``values`` holds;
    format takes the value and the section, real is text or a key of the section."""
    out = []
    for order, label, key, fmt, real, what in spec:
        if key in values:
            ref = f"{values[real]:.2f}" if real in values else real
            out.append(ReportRow(order, label, fmt(values[key], values), ref, what))
    return out
