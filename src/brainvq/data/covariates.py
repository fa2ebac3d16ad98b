"""Covariates: what is known of each slice beyond its pixels, from a subject table and from the
slice itself.

A subject table (``data.subjects_table``, a CSV; by default the data folder's ``subjects.csv``)
has one row per subject: a ``subject`` column holding the subjects brainvq reads from the slice
names (brainvq.data.subjects: ``case_NNN``, ``OAS1_NNNN``, ``sub-LABEL``), or OASIS-1's own ``ID``
column (``OAS1_0001_MR1`` is subject ``OAS1_0001``), and any other columns. A column whose values
all read as numbers is continuous, any other categorical (its levels: the distinct texts, sorted).
Names are lower-cased, other characters turned to ``_`` (OASIS-1's ``M/F`` is ``m_f``, ``CDR``
is ``cdr``). Empty cells and NA, N/A, NaN, None, null, -, ? are missing. A text column whose every
value is itself a subject name (OASIS-1's ``ID`` beside a ``subject`` column) is an identifier,
not a covariate; nor is a column with no value (OASIS-1's ``Delay`` on first sessions). A subject's later rows (OASIS-1's ``_MR2`` reliability sessions) are not used.

Missing values, table subjects with no slices and data subjects with no row are each reported as
one warning line (a count and a few examples); their covariates count as unknown. A file that
cannot be read as such a table is a DataError naming the file and the fix.

Per slice, every covariate is a float: the value (continuous) or the level's index
(categorical), NaN where unknown. Anatomy measured from each slice (brainvq.data.anatomy:
``brain_fraction``, ``ventricle_fraction``) is a per-slice covariate of the same form.

    table = read_table("subjects.csv")
    values = table.slice_values(splits.subjects["train"])      # {"cdr": (N,) float, ...}
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainvq.data.anatomy import ANATOMY
from brainvq.data.subjects import subject_of, warn_once
from brainvq.errors import DataError

MISSING = {"", "na", "n/a", "nan", "none", "null", "-", "?"}
KEY_COLUMNS = ("subject", "id")  # the subject column, case-insensitive, first found
TABLE_NAME = "subjects.csv"  # what a data folder's own table is called
EXAMPLES = 3  # examples a report line names
FIX = (
    "give data.subjects_table a CSV whose header has a 'subject' column (the names read from "
    "the slices, e.g. case_201) and the covariates (or set it to none)"
)


def column_name(text: str) -> str:
    """A column header as a covariate name: lower case, runs of other characters as '_'."""
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def is_missing(text: str) -> bool:
    """True for an empty cell or one of the words MISSING holds."""
    return text.strip().lower() in MISSING


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class Covariate:
    """One covariate: its name, the column it came from, its kind and its values per subject
    (a float for continuous ones, a level for categorical ones; missing subjects left out)."""

    name: str
    column: str
    kind: str  # "continuous" | "categorical"
    values: dict[str, float | str] = field(default_factory=dict)
    levels: tuple[str, ...] = ()

    def code(self, value: float | str) -> float:
        """A value as the float a slice carries: itself, or its level's index."""
        return float(value) if self.kind == "continuous" else float(self.levels.index(value))

    def describe(self, subjects: set[str] | None = None) -> dict:
        """name, column, type, levels or range, and how many subjects (of ``subjects``, or of
        the table) have a value: what data.json lists."""
        have = [s for s in self.values if subjects is None or s in subjects]
        out: dict = {"name": self.name, "column": self.column, "type": self.kind, "per": "subject"}
        if self.kind == "categorical":
            out["levels"] = list(self.levels)
        else:
            known = [self.values[s] for s in have] or [math.nan]
            out["range"] = [float(np.min(known)), float(np.max(known))]
        out["subjects"] = len(have)
        return out


@dataclass
class SubjectTable:
    """A subject table read by read_table."""

    path: Path
    covariates: dict[str, Covariate]
    subjects: list[str]  # in file order, each once
    missing: dict[str, list[str]]  # covariate name -> subjects whose value is missing
    duplicates: dict[str, str]  # subject -> the key of a later row not used
    skipped: dict[str, str]  # columns that are no covariate -> why ("identifier", "no values")

    def slice_values(self, subjects: np.ndarray) -> dict[str, np.ndarray]:
        """Each covariate's float per slice of the given subjects (NaN where unknown)."""
        out = {}
        for name, cov in self.covariates.items():
            coded = {s: cov.code(v) for s, v in cov.values.items()}
            out[name] = np.array([coded.get(s, math.nan) for s in subjects], dtype=np.float32)
        return out

    def report(self, data_subjects: set[str]) -> list[str]:
        """The one-line reports: missing values, duplicate rows, table subjects with no slices,
        data subjects with no row (empty where all is well)."""
        name, lines = self.path, []
        n_missing = sum(len(v) for v in self.missing.values())
        if n_missing:
            per = ", ".join(f"{k} {len(v)}" for k, v in self.missing.items() if v)
            ex = [f"{s} {k}" for k, v in self.missing.items() for s in v][:EXAMPLES]
            lines.append(
                f"{name}: {n_missing} missing value(s) ({per}; e.g. {', '.join(ex)}): those "
                "subjects' covariates count as unknown"
            )
        if self.duplicates:
            ex = ", ".join(f"{s} ({k})" for s, k in list(self.duplicates.items())[:EXAMPLES])
            lines.append(
                f"{name}: {len(self.duplicates)} subject(s) have more than one row (e.g. "
                f"{ex}): the first row of each is used"
            )
        unknown = [s for s in self.subjects if s not in data_subjects]
        if unknown:
            lines.append(
                f"{name}: {len(unknown)} of {len(self.subjects)} subjects have no slices in the "
                f"data (e.g. {_examples(unknown)}): their rows are not used"
            )
        rowless = sorted(data_subjects - set(self.subjects))
        if rowless:
            lines.append(
                f"{name}: {len(rowless)} of {len(data_subjects)} subjects of the data have no "
                f"row (e.g. {_examples(rowless)}): their covariates count as unknown"
            )
        return lines

    def describe(self, data_subjects: set[str]) -> list[dict]:
        """Each covariate as data.json lists it (subjects counted among the data's)."""
        return [c.describe(data_subjects) for c in self.covariates.values()]


def _examples(names: list[str]) -> str:
    more = ", ..." if len(names) > EXAMPLES else ""
    return ", ".join(names[:EXAMPLES]) + more


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a CSV (comma, semicolon or tab separated), or DataError."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: subject table not found; {FIX}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text (UTF-8) CSV file; {FIX}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the subject table ({e.strerror}); {FIX}") from None
    if "\0" in text:
        raise DataError(f"{path}: not a text CSV file (it holds binary data); {FIX}")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: the subject table is empty; {FIX}")
    delimiter = max(",;\t", key=lines[0].count)
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(r)]
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV ({e}); {FIX}") from None
    header, body = [h.strip() for h in rows[0]], rows[1:]
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {i} has {len(row)} fields where the header has {len(header)}; "
                "give every row one value per column (quote values that hold the separator)"
            )
    return header, body


def _key_column(path: Path, header: list[str]) -> int:
    lower = [h.lower() for h in header]
    for key in KEY_COLUMNS:
        if key in lower:
            return lower.index(key)
    raise DataError(
        f"{path}: no 'subject' (or OASIS-1 'ID') column among {', '.join(header[:8])}; {FIX}"
    )


def _covariate(name: str, column: str, cells: dict[str, str]) -> Covariate:
    """A column's covariate: continuous if every present value is a number, else categorical."""
    present = {s: v.strip() for s, v in cells.items() if not is_missing(v)}
    numbers = {s: _number(v) for s, v in present.items()}
    if all(v is not None for v in numbers.values()):
        return Covariate(name, column, "continuous", {s: float(v) for s, v in numbers.items()})
    levels = tuple(sorted(set(present.values())))
    return Covariate(name, column, "categorical", present, levels)


def _is_identifier(cells: dict[str, str]) -> bool:
    """A text column whose every value is a subject name (OASIS-1's ID beside `subject`)."""
    present = [v for v in cells.values() if not is_missing(v)]
    return bool(present) and all(subject_of(v) for v in present)


def read_table(path: str | Path, pattern: str = "") -> SubjectTable:
    """A subject table from a CSV (rules in the module docstring); ``pattern``:
    data.subject_pattern, which reads the subject from the key column's values as from names."""
    path = Path(path)
    header, body = _rows(path)
    key = _key_column(path, header)
    names = [column_name(h) for h in header]
    seen: dict[str, str] = {}
    for i, (h, n) in enumerate(zip(header, names, strict=True)):
        if i == key:
            continue
        if not n or n in ("level", "below"):
            raise DataError(f"{path}: column {h!r} has no usable name; rename it (e.g. 'age')")
        if n in seen:
            raise DataError(
                f"{path}: columns {seen[n]!r} and {h!r} both read as covariate {n}; rename one"
            )
        seen[n] = h
    first: dict[str, list[str]] = {}
    duplicates: dict[str, str] = {}
    for row in body:
        raw = row[key].strip()
        if is_missing(raw):
            continue
        subject = subject_of(raw, pattern=pattern) or raw
        if subject in first:
            duplicates.setdefault(subject, raw)
        else:
            first[subject] = row
    covariates, missing, skipped = {}, {}, {}
    for i, (h, n) in enumerate(zip(header, names, strict=True)):
        if i == key:
            continue
        cells = {s: row[i] for s, row in first.items()}
        if header[key].lower() == "subject" and _is_identifier(cells):
            skipped[h] = "identifier"
            continue
        if all(is_missing(v) for v in cells.values()):
            skipped[h] = "no values"
            continue
        covariates[n] = _covariate(n, h, cells)
        missing[n] = [s for s, v in cells.items() if is_missing(v)]
    return SubjectTable(path, covariates, list(first), missing, duplicates, skipped)


def find_table(setting: str, root: str | Path) -> Path | None:
    """The subject table data.subjects_table names for data under ``root``: None for "none",
    or for "" where ROOT/subjects.csv does not exist; a relative path is looked up from the
    working folder, then from ``root``."""
    if setting.strip().lower() == "none":
        return None
    if not setting:
        own = Path(root) / TABLE_NAME
        return own if str(root) != "default" and own.is_file() else None
    path = Path(setting).expanduser()
    if not path.is_absolute() and not path.exists() and str(root) != "default":
        beside = Path(root) / path
        if beside.exists():
            return beside
    return path


def load_table(setting: str, root: str | Path, subjects: dict, pattern: str = ""):
    """The subject table for data under ``root`` (find_table), read, its reports warned once
    each against the subjects of the splits ({split: (N,) subjects}); None where there is none."""
    path = find_table(setting, root)
    if path is None:
        return None
    table = read_table(path, pattern)
    known = {s for v in subjects.values() for s in v if s}
    for line in table.report(known):
        warn_once(line)
    return table


def covariate_record(splits, setting: str, root: str | Path, pattern: str = "") -> dict:
    """What RUN/data.json says of the covariates: the table used (or None), each of its
    covariates (Covariate.describe, subjects counted among the data's), then the anatomy measured
    from every slice (per slice); the table's reports are warned."""
    measured = [
        {"name": n, "type": "continuous", "per": "slice", "from": "brainvq.data.anatomy"}
        for n in ANATOMY
    ]
    table = load_table(setting, root, splits.subjects, pattern)
    if table is None:
        return {"subjects_table": None, "covariates": measured}
    known = {s for v in splits.subjects.values() for s in v if s}
    out = {"subjects_table": str(table.path), "covariates": table.describe(known) + measured}
    return out | ({"columns_skipped": table.skipped} if table.skipped else {})
