"""One line on the data a run found: where, its split sizes, its subjects and the image size."""

from __future__ import annotations

import re
from pathlib import Path

from brainvq.config import DataConfig
from brainvq.data.layouts import Splits, discover

# subject of a slice from its file name: OASIS keras PNGs, OASIS-1, BIDS
SUBJECT = re.compile(r"(case_\d+)_slice|(OAS1_\d+)|(sub-[A-Za-z0-9]+)")
SOURCES = {
    "keras": "keras_png_slices folders",
    "original": "the original project's oasis/ folders",
    "folder": "a plain folder, split by a seeded rule",
    "volumes": "NIfTI volumes, split by volume",
    "default": "the embedded MNI152 template slices",
}


def subjects(splits: Splits, split: str) -> int | None:
    """How many subjects a split's file names show (None where they show none)."""
    if splits.source == "default":
        return 1
    found = {m.group(0) for p in splits.files.get(split, []) if (m := SUBJECT.search(p.name))}
    return len(found) or None


def describe_data(root: str | Path, cfg: DataConfig) -> str:
    """E.g. "data: default (the embedded MNI152 template slices): train 106, validate 13, test 13
    slices; 1 subject; 128x128"."""
    splits = discover(root, cfg)
    sizes = splits.sizes()
    counts = ", ".join(f"{k} {sizes[k]}" for k in ("train", "validate", "test") if k in sizes)
    subs = [subjects(splits, k) for k in ("train", "validate", "test") if k in sizes]
    if splits.source == "default":
        who = "1 subject"
    elif all(n is not None for n in subs):
        who = " / ".join(str(n) for n in subs) + " subjects"
    else:
        who = "subjects not told by the file names"
    where = SOURCES.get(splits.source, splits.source)
    size = cfg.image_size
    return f"data: {root} ({where}): {counts} slices; {who}; {size}x{size}"
