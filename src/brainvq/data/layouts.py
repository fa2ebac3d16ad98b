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

Every split brainvq makes itself keeps each subject whole (subjects read from the file names,
brainvq.data.subjects); the embedded default, one brain, is split by slice. Each split's subjects
and slice levels travel with it, in the order of its slices:

    s = discover("/data/OASIS", cfg.data)
    arrays = split_arrays(s, cfg.data)        # arrays["train"][i] is slice i of train
    s.subjects["train"][i], s.levels["train"][i], s.relative_levels()["train"][i]

How each file becomes an array: brainvq.data.images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainvq.config import DataConfig
from brainvq.data.images import IMAGE_SUFFIXES, decode_slice, load_uint8, to_square
from brainvq.data.splits import SPLITS, seeded_split
from brainvq.data.subjects import (
    BUILTIN_NAMES,
    FIX,
    level_of,
    relative_levels,
    subject_of,
    summarize,
    warn_once,
)
from brainvq.data.volumes import nifti_files, nifti_folder_splits
from brainvq.errors import DataError

DEFAULT_DATA = Path(__file__).parent / "default_data" / "mni152_axial.npz"


@dataclass
class Splits:
    """The files (or, for embedded data, the arrays) of each split, where they came from, and
    each slice's subject ("" where its name carries none) and level (the Z of `slice_Z`, -1
    where unknown), in the order of the split's slices."""

    source: str  # keras | original | folder | volumes | default
    root: str
    files: dict[str, list[Path]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    subjects: dict[str, np.ndarray] = field(default_factory=dict)
    levels: dict[str, np.ndarray] = field(default_factory=dict)
    # where the subjects came from: names | data.subject_pattern | volumes | one template brain
    subjects_from: str = "names"

    def sizes(self) -> dict[str, int]:
        """Number of slices in each split."""
        if self.arrays:
            return {k: len(v) for k, v in self.arrays.items()}
        return {k: len(v) for k, v in self.files.items()}

    def slice_levels(self, split: str) -> list[int | None]:
        """The axial level of each slice of a split where known (the Z of ``..._slice_Z...``
        names, the template's level for the embedded data, a volume's slice index), else None."""
        if split in self.levels:
            return [int(v) if v >= 0 else None for v in self.levels[split]]
        return [None] * self.sizes().get(split, 0)

    def relative_levels(self) -> dict[str, np.ndarray]:
        """Each slice's level within its subject: 0 its lowest slice, 1 its highest (NaN where
        the subject or the level is unknown); see brainvq.data.subjects.relative_levels."""
        return relative_levels(self.subjects, self.levels)

    def subject_summary(self) -> dict:
        """Subjects per split and how many sit in more than one split (data.json, evaluate)."""
        ordered = {k: self.subjects[k] for k in SPLITS if k in self.subjects}
        return summarize(ordered, self.subjects_from, one_brain=self.source == "default")


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

    found, source = _keras_folders(root)
    if found:
        return _keras_splits(root, found, source, cfg)
    if nifti_files(root):  # a folder of .nii/.nii.gz volumes: split by volume, sliced in memory
        arrays, subjects, levels, how = nifti_folder_splits(root, cfg)
        return Splits(
            "volumes", str(root), arrays=arrays, subjects=subjects, levels=levels, subjects_from=how
        )
    return _folder_splits(root, cfg)


def _keras_folders(root: Path) -> tuple[dict[str, Path], str]:
    """The keras_png_slices_<split> folders under root (as the course's archive has them, or in
    the original oasis/<split>/ nesting) and which layout ("keras", "original"; {} and "" if none)."""
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
    return found, source


def _keras_splits(root: Path, found: dict[str, Path], source: str, cfg: DataConfig) -> Splits:
    """Splits from keras_png_slices_<split> folders; a missing validation or test split is cut
    from the training slices by subject."""
    if "train" not in found:
        raise DataError(f"{root}: has {', '.join(found)} slices but no keras_png_slices_train")
    files = {k: _slice_files(v) for k, v in found.items()}
    for split, lst in files.items():
        if not lst:
            raise DataError(f"{found[split]}: no PNG/JPEG slices in this split folder")
    folder_of = {f: found[k] for k, lst in files.items() for f in lst}
    if "validate" not in files or "test" not in files:
        _say_if_no_subjects(files["train"], folder_of, cfg, found["train"])
    if "validate" not in files:
        parts = _split_by_subject(
            files["train"], folder_of, {"validate": cfg.val_fraction}, cfg.split_seed, cfg
        )
        files["train"], files["validate"] = parts["train"], parts["validate"]
    if "test" not in files:
        parts = _split_by_subject(
            files["train"], folder_of, {"test": cfg.test_fraction}, cfg.split_seed + 1, cfg
        )
        files["train"], files["test"] = parts["train"], parts["test"]
    return _with_subjects(Splits(source, str(root), files=files), folder_of, cfg)


def _folder_splits(root: Path, cfg: DataConfig) -> Splits:
    """Splits of a plain folder of slices, cut by subject (validation and test fractions)."""
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
    folder_of = dict.fromkeys(all_files, root)
    _say_if_no_subjects(all_files, folder_of, cfg, root)
    fractions = {"validate": cfg.val_fraction, "test": cfg.test_fraction}
    files = _split_by_subject(all_files, folder_of, fractions, cfg.split_seed, cfg)
    return _with_subjects(Splits("folder", str(root), files=files), folder_of, cfg)


def _subjects(files: list[Path], folder_of: dict[Path, Path], cfg: DataConfig) -> np.ndarray:
    """Each file's subject, read from its name or its folders below the one it was listed in."""
    return np.array([subject_of(f, folder_of[f], cfg.subject_pattern) for f in files], dtype=object)


def _split_by_subject(
    files: list[Path], folder_of: dict[Path, Path], fractions: dict, seed: int, cfg: DataConfig
) -> dict[str, list[Path]]:
    """seeded_split of files with each subject kept whole (files without one: one by one)."""
    return seeded_split(files, fractions, seed, groups=list(_subjects(files, folder_of, cfg)))


def _say_if_no_subjects(
    files: list[Path], folder_of: dict[Path, Path], cfg: DataConfig, where: Path
) -> None:
    """Warn (once) that slices whose names carry no subject are split one by one."""
    missing = int((_subjects(files, folder_of, cfg) == "").sum())
    if not missing:
        return
    wanted = (
        f"data.subject_pattern '{cfg.subject_pattern}'" if cfg.subject_pattern else BUILTIN_NAMES
    )
    which = (
        "no slice name carries"
        if missing == len(files)
        else (f"{missing} of {len(files)} slice names carry no")
    )
    warn_once(
        f"{where}: {which} subject (looked for {wanted}); those slices are split one by one, so "
        f"one brain can sit in two splits and held-out scores read too high: {FIX}"
    )


def _with_subjects(splits: Splits, folder_of: dict[Path, Path], cfg: DataConfig) -> Splits:
    """Fill in each file's subject and level, read from its name."""
    for split, files in splits.files.items():
        splits.subjects[split] = _subjects(files, folder_of, cfg)
        splits.levels[split] = np.array([level_of(f) for f in files], dtype=np.int64)
    splits.subjects_from = "data.subject_pattern" if cfg.subject_pattern else "names"
    return splits


DEFAULT_SUBJECT = "MNI152-2009a"


def _default_splits(cfg: DataConfig) -> Splits:
    """The embedded slices: consecutive axial levels of one template brain, split by slice."""
    with np.load(DEFAULT_DATA) as z:
        slices, levels = z["slices"], z["z"].astype(np.int64)
    idx = list(range(len(slices)))
    parts = seeded_split(
        idx, {"validate": cfg.val_fraction, "test": cfg.test_fraction}, cfg.split_seed
    )
    picks = {k: np.array(v, dtype=np.int64) for k, v in parts.items()}
    return Splits(
        "default",
        "default",
        arrays={k: slices[p] for k, p in picks.items()},
        subjects={k: np.full(len(p), DEFAULT_SUBJECT, dtype=object) for k, p in picks.items()},
        levels={k: levels[p] for k, p in picks.items()},
        subjects_from="one template brain",
    )


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


def load_data(
    root: str | Path, cfg: DataConfig, progress: bool = True
) -> tuple[Splits, dict[str, np.ndarray]]:
    """discover + decode: the Splits (with each slice's subject and level) and the uint8 array
    of every split, in the same order; an empty train or test split is an error."""
    splits = discover(root, cfg)
    arrays = split_arrays(splits, cfg, progress)
    for name in ("train", "test"):
        if len(arrays.get(name, ())) == 0:
            known = {s for v in splits.subjects.values() for s in v if s}
            kept = ""
            if known and splits.source != "default":
                kept = f" ({len(known)} subject(s) in all, each kept whole)"
            raise DataError(
                f"{root}: the {name} split is empty{kept}; add slices or subjects, or change "
                "data.val_fraction / data.test_fraction"
            )
    return splits, arrays


def load_splits(root: str | Path, cfg: DataConfig, progress: bool = True) -> dict[str, np.ndarray]:
    """discover + decode: uint8 arrays of every split; an empty split is an error."""
    return load_data(root, cfg, progress)[1]
