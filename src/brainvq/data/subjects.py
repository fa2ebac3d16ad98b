"""Whose brain is a slice, and at which level: read from file names.

The subject of a file is the first of these found in its name, else in the names of the folders
that hold it (below the data folder): `case_NNN` (OASIS keras PNGs), `OAS1_NNNN` (OASIS-1; its
sessions `_MR1`, `_MR2` are one subject; `OAS2_NNNN` likewise), `sub-LABEL` (BIDS; every `ses-*`
of it is one subject). `data.subject_pattern` replaces them: a regular expression whose one group
(or, without a group, whose whole match) is the subject. The level of a slice is the `Z` of
`slice_Z` in its name (0 the lowest), or -1 where the name has none.

Splits made by brainvq keep each subject whole (brainvq.data.splits); a split's subjects and levels
travel with it (brainvq.data.layouts.Splits). `summarize` and `describe` say how many subjects each
split holds and how many sit in more than one split (a leak: the held-out scores read too high).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from brainvq.config import check_subject_pattern

BUILTIN_PATTERNS = (
    re.compile(r"(?<![A-Za-z0-9])(case_\d+)(?!\d)"),  # OASIS keras PNGs: case_201_slice_0.nii.png
    re.compile(r"(?<![A-Za-z0-9])(OAS[12]_\d+)(?!\d)"),  # OASIS-1/2: OAS1_0001_MR1 -> OAS1_0001
    re.compile(r"(?<![A-Za-z0-9])(sub-[A-Za-z0-9]+)"),  # BIDS: sub-01_ses-2_T1w -> sub-01
)
BUILTIN_NAMES = "case_NNN, OAS1_NNNN or sub-LABEL"
LEVEL_PATTERN = re.compile(r"(?<![A-Za-z0-9])slice_(\d+)(?!\d)")
NO_LEVEL = -1
FIX = "set data.subject_pattern to a regular expression whose group captures the subject"


def compile_pattern(pattern: str) -> re.Pattern | None:
    """data.subject_pattern compiled (None for ""), or ConfigError naming the setting."""
    if not pattern:
        return None
    check_subject_pattern(pattern)
    return re.compile(pattern)


def _search(patterns: Sequence[re.Pattern], text: str) -> str:
    for p in patterns:
        m = p.search(text)
        if m:
            found = m.group(1) if p.groups else m.group(0)
            if found:
                return found
    return ""


def subject_of(path: str | Path, root: str | Path | None = None, pattern: str = "") -> str:
    """The subject read from a file's name, else from its folders below root ("" if none)."""
    path = Path(path)
    compiled = compile_pattern(pattern)
    patterns = (compiled,) if compiled is not None else BUILTIN_PATTERNS
    names = [path.name]
    if root is not None:
        try:
            names += list(reversed(path.parent.relative_to(root).parts))
        except ValueError:
            pass
    for name in names:
        found = _search(patterns, name)
        if found:
            return found
    return ""


def level_of(path: str | Path) -> int:
    """The Z of `slice_Z` in a file's name (0 the lowest slice), or NO_LEVEL (-1)."""
    m = LEVEL_PATTERN.search(Path(path).name)
    return int(m.group(1)) if m else NO_LEVEL


def read_subjects(
    files: Iterable[Path], root: str | Path | None, pattern: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Subjects (str, "" where none) and levels (int64, -1 where none) of files, in order."""
    files = list(files)
    subjects = np.array([subject_of(f, root, pattern) for f in files], dtype=object)
    levels = np.array([level_of(f) for f in files], dtype=np.int64)
    return subjects, levels


def relative_levels(
    subjects: dict[str, np.ndarray], levels: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Each slice's level normalised within its subject over every split: 0 its subject's lowest
    slice, 1 its highest (0.5 for a subject's only level); NaN without a subject or a level."""
    lows: dict[str, int] = {}
    highs: dict[str, int] = {}
    for split in subjects:
        for s, z in zip(subjects[split], levels[split], strict=True):
            if s and z >= 0:
                lows[s] = min(lows.get(s, z), z)
                highs[s] = max(highs.get(s, z), z)
    out = {}
    for split in subjects:
        rel = np.full(len(subjects[split]), np.nan, dtype=np.float32)
        for i, (s, z) in enumerate(zip(subjects[split], levels[split], strict=True)):
            if s and z >= 0:
                span = highs[s] - lows[s]
                rel[i] = (z - lows[s]) / span if span else 0.5
        out[split] = rel
    return out


# -- what the splits hold, as data.json, metrics.json and the report say it -----------------------
def summarize(
    subjects: dict[str, np.ndarray], how: str, one_brain: bool = False
) -> dict[str, object]:
    """Subjects per split and those in more than one split (None where no name carried one).

    ``how``: where the subjects came from ("names", "data.subject_pattern", "volumes": one per
    volume where names carry none, "one template brain"); ``one_brain``: the data is one brain
    split by slice on purpose (the embedded default), so sharing it is no leak to warn about."""
    known = {k: sorted({s for s in v if s}) for k, v in subjects.items()}
    where: dict[str, list[str]] = {}
    for split, names in known.items():
        for s in names:
            where.setdefault(s, []).append(split)
    shared = {s: splits for s, splits in where.items() if len(splits) > 1}
    any_known = any(known.values())
    return {
        "subjects": {k: len(v) for k, v in known.items()},
        "subjects_in_more_than_one_split": len(shared) if any_known else None,
        "shared_subjects": {s: shared[s] for s in sorted(shared)[:5]},  # a few, to name them
        "slices_without_subject": int(sum(int((v == "").sum()) for v in subjects.values())),
        "subjects_from": how if any_known else "none",
        "one_brain": one_brain,
    }


ONE_BRAIN = "one brain, split by slice: scores compare levels of one brain, not new brains"


def describe(summary: dict) -> str:
    """One line: the subjects per split and how many are in more than one split."""
    if summary.get("one_brain"):
        return f"subjects: {ONE_BRAIN}"
    k = summary.get("subjects_in_more_than_one_split")
    if k is None:
        return (
            f"subjects: none read from the file names ({BUILTIN_NAMES}); leaks unchecked "
            "(see the near-twin share); data.subject_pattern reads them"
        )
    per = ", ".join(f"{split} {n}" for split, n in summary["subjects"].items())
    line = f"subjects: {per}; {k} subject{'s' if k != 1 else ''} in more than one split"
    missing = summary.get("slices_without_subject", 0)
    if missing:
        line += f"; {missing} slice(s) without a subject"
    return line


def leak_warning(summary: dict) -> str | None:
    """The warning a leak deserves (None when there is none, or the data is one brain)."""
    k = summary.get("subjects_in_more_than_one_split")
    if not k or summary.get("one_brain"):
        return None
    named = "; ".join(f"{s} in {', '.join(v)}" for s, v in summary["shared_subjects"].items())
    more = ", ..." if k > len(summary["shared_subjects"]) else ""
    return (
        f"{k} subject(s) have slices in more than one split ({named}{more}): held-out scores "
        "read too high; give splits that keep each subject whole, or one folder of all the "
        "slices for brainvq to split by subject"
    )


_SAID: set[str] = set()


def warn_once(message: str) -> None:
    """warnings.warn a message once per process (data is loaded by several stages of a run)."""
    if message not in _SAID:
        _SAID.add(message)
        warnings.warn(message, stacklevel=3)


def warn_leaks(summary: dict) -> None:
    """Warn (once per process) when subjects sit in more than one split."""
    message = leak_warning(summary)
    if message:
        warn_once(message)
