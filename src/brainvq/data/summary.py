"""One line on the data a run found: where, its split sizes, its subjects and the image size."""

from __future__ import annotations

from pathlib import Path

from brainvq.config import DataConfig
from brainvq.data.layouts import discover
from brainvq.data.splits import SPLITS
from brainvq.data.subjects import describe as describe_subjects

SOURCES = {
    "keras": "keras_png_slices folders",
    "original": "the original project's oasis/ folders",
    "folder": "one plain folder, split by brainvq",
    "volumes": "NIfTI volumes, split by volume",
    "default": "the embedded MNI152 template slices",
}


def describe_data(root: str | Path, cfg: DataConfig) -> str:
    """E.g. "data: default (the embedded MNI152 template slices): train 106, validate 13, test 13
    slices at 128x128; subjects: one brain, split by slice: ..." (brainvq.data.subjects.describe)."""
    splits = discover(root, cfg)
    sizes = splits.sizes()
    counts = ", ".join(f"{k} {sizes[k]}" for k in SPLITS if k in sizes)
    where = SOURCES.get(splits.source, splits.source)
    size = cfg.image_size
    subjects = describe_subjects(splits.subject_summary())
    return f"data: {root} ({where}): {counts} slices at {size}x{size}; {subjects}"
