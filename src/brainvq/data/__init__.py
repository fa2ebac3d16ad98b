"""Slices on disk -> uint8 cache -> float tensors (B, 1, H, W) in [0, 1].

- `layouts`: find the train / validate / test splits under a folder in any supported layout.
- `images`: decode one slice file to a square uint8 array; the decoded cache.
- `volumes`: NIfTI / Analyze volumes to axial slices; raw OASIS-1 to the keras PNG layout.
- `splits`: the one seeded split helper behind every split brainvq makes itself (by subject).
- `subjects`: each slice's subject and level read from its file name; what the splits hold.
"""

from brainvq.data.images import (
    IMAGE_SUFFIXES,
    atomic_save_npy,
    cache_root,
    decode_slice,
    load_uint8,
    named_slice_files,
    read_named_slices,
    to_square,
)
from brainvq.data.layouts import Splits, discover, load_data, load_splits, split_arrays
from brainvq.data.splits import SPLITS, seeded_split
from brainvq.data.subjects import level_of, relative_levels, subject_of
from brainvq.data.volumes import prepare_oasis1, volume_slices

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "Splits",
    "atomic_save_npy",
    "cache_root",
    "decode_slice",
    "discover",
    "level_of",
    "load_data",
    "load_splits",
    "load_uint8",
    "named_slice_files",
    "prepare_oasis1",
    "read_named_slices",
    "relative_levels",
    "seeded_split",
    "split_arrays",
    "subject_of",
    "to_square",
    "volume_slices",
]
