"""Slices on disk -> uint8 cache -> float tensors (B, 1, H, W) in [0, 1].

Sources, all discovered by `discover(root)` into the same `Splits` (train / validate / test file
lists, or arrays for the embedded default):

- keras layout: ROOT/keras_png_slices_{train,validate,test} (validate optional: then a seeded share
  of train); keras_png_slices_seg_* folders are segmentation masks and are ignored;
- the original project's layout: ROOT/oasis/train/keras_png_slices_train and
  ROOT/oasis/test/keras_png_slices_test (ROOT may also be the `oasis` folder itself);
- a plain folder of PNG/JPEG slices (searched recursively), split by a seeded rule;
- a folder of NIfTI volumes (.nii/.nii.gz, searched recursively), split by volume and sliced by
  brainvq.volumes.volume_slices;
- "default": the embedded slices of the MNI152 2009a template (see default_data/NOTICE).

How each file becomes an array: brainvq.data.images.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainvq.config import DataConfig
from brainvq.data.images import IMAGE_SUFFIXES, decode_slice, load_uint8, to_square
from brainvq.data.splits import SPLITS, seeded_split
from brainvq.data.volumes import nifti_files, nifti_folder_splits
from brainvq.errors import DataError

DEFAULT_DATA = Path(__file__).parent / "default_data" / "mni152_axial.npz"
SLICE_LEVEL = re.compile(r"_slice_(\d+)")  # the axial level in OASIS-style names


@dataclass
class Splits:
    """The files (or, for embedded data, the arrays) of each split, and where they came from."""

    source: str  # keras | original | folder | volumes | default
    root: str
    files: dict[str, list[Path]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    # the axial level of each slice where the source tells (embedded data: the template's z)
    levels: dict[str, list[int | None]] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Number of slices in each split."""
        if self.arrays:
            return {k: len(v) for k, v in self.arrays.items()}
        return {k: len(v) for k, v in self.files.items()}

    def slice_levels(self, split: str) -> list[int | None]:
        """The axial level of each slice of a split where known: the Z of OASIS-style names
        (``..._slice_Z...``), the template's level for the embedded data; None elsewhere."""
        if split in self.levels:
            return list(self.levels[split])
        found = [SLICE_LEVEL.search(p.name) for p in self.files.get(split, [])]
        if self.files:
            return [int(m.group(1)) if m else None for m in found]
        return [None] * len(self.arrays.get(split, ()))


def _is_seg(name: str) -> bool:
    return "_seg" in name.lower()


def _slice_files(folder: Path) -> list[Path]:
    """Image files of a split folder, sorted; other visible files are an error."""
    files, strays = [], []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if p.is_dir() or any(part.startswith(".") for part in rel):
            continue
        if any(_is_seg(part) for part in rel[:-1]):
            continue
        (files if p.suffix.lower() in IMAGE_SUFFIXES else strays).append(p)
    if strays:
        raise DataError(
            f"{strays[0]}: not a PNG/JPEG slice ({len(strays)} such file(s) in {folder}); "
            "move non-image files out of the slice folder"
        )
    return files


def discover(root: str | Path, cfg: DataConfig | None = None) -> Splits:
    """Find the splits under root in any supported layout; raise DataError if there are none."""
    cfg = cfg or DataConfig()
    if str(root) == "default":
        return _default_splits(cfg)
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: data folder not found (give --data a folder, or 'default')")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (give --data the folder that holds the slices)")

    found: dict[str, Path] = {}
    source = ""
    for split in SPLITS:
        d = root / f"keras_png_slices_{split}"
        if d.is_dir():
            found[split], source = d, "keras"
    if not found:
        base = root if (root / "train").is_dir() and root.name == "oasis" else root / "oasis"
        for split in SPLITS:
            d = base / split / f"keras_png_slices_{split}"
            if d.is_dir():
                found[split], source = d, "original"

    if found:
        if "train" not in found:
            raise DataError(f"{root}: has {', '.join(found)} slices but no keras_png_slices_train")
        files = {k: _slice_files(v) for k, v in found.items()}
        for split, lst in files.items():
            if not lst:
                raise DataError(f"{found[split]}: no PNG/JPEG slices in this split folder")
        if "validate" not in files:
            parts = seeded_split(files["train"], {"validate": cfg.val_fraction}, cfg.split_seed)
            files["train"], files["validate"] = parts["train"], parts["validate"]
        if "test" not in files:
            parts = seeded_split(files["train"], {"test": cfg.test_fraction}, cfg.split_seed + 1)
            files["train"], files["test"] = parts["train"], parts["test"]
        return Splits(source, str(root), files=files)

    if nifti_files(root):  # a folder of .nii/.nii.gz volumes: split by volume, sliced in memory
        return Splits("volumes", str(root), arrays=nifti_folder_splits(root, cfg))

    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if (
        subdirs
        and all(_is_seg(p.name) for p in subdirs)
        and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir() if p.is_file())
    ):
        raise DataError(
            f"{root}: holds only segmentation-mask folders ({subdirs[0].name}, ...); "
            "point --data at the folder with keras_png_slices_train/validate/test"
        )
    all_files = _slice_files(root)
    if not all_files:
        raise DataError(
            f"{root}: no PNG/JPEG slices found (looked for keras_png_slices_* and images)"
        )
    if len(all_files) < 3:
        raise DataError(f"{root}: only {len(all_files)} slice(s); at least 3 are needed to split")
    files = seeded_split(
        all_files, {"validate": cfg.val_fraction, "test": cfg.test_fraction}, cfg.split_seed
    )
    return Splits("folder", str(root), files=files)


def _default_splits(cfg: DataConfig) -> Splits:
    with np.load(DEFAULT_DATA) as z:
        slices, level = z["slices"], z["z"]
    idx = list(range(len(slices)))
    parts = seeded_split(
        idx, {"validate": cfg.val_fraction, "test": cfg.test_fraction}, cfg.split_seed
    )
    arrays = {k: slices[np.array(v, dtype=np.int64)] for k, v in parts.items()}
    levels = {k: [int(level[i]) for i in v] for k, v in parts.items()}
    return Splits("default", "default", arrays=arrays, levels=levels)


def split_arrays(splits: Splits, cfg: DataConfig, progress: bool = True) -> dict[str, np.ndarray]:
    """The uint8 (N, S, S) array of each split at data.image_size."""
    size = cfg.image_size
    if splits.arrays:
        return {
            k: (v if v.shape[1:] == (size, size) else np.stack([to_square(a, size) for a in v]))
            for k, v in splits.arrays.items()
        }
    native = {decode_slice(fs[0])[0].shape for fs in splits.files.values() if fs}
    if native and all(s != (size, size) for s in native) and len(native) == 1:
        h, w = native.pop()
        warnings.warn(
            f"slices are {w}x{h}; resizing to {size}x{size} (set data.image_size to {max(h, w)} "
            "to keep them at their own size)",
            stacklevel=2,
        )
    return {k: load_uint8(v, size, cfg, progress) for k, v in splits.files.items()}


def load_splits(root: str | Path, cfg: DataConfig, progress: bool = True) -> dict[str, np.ndarray]:
    """discover + decode: uint8 arrays of every split; an empty split is an error."""
    splits = discover(root, cfg)
    arrays = split_arrays(splits, cfg, progress)
    for name in ("train", "test"):
        if len(arrays.get(name, ())) == 0:
            raise DataError(f"{root}: the {name} split is empty; add slices or lower the fractions")
    return arrays
