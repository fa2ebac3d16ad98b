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

Size rule: each slice is centre-padded with zeros to a square, then resized to data.image_size
(area averaging when shrinking, bilinear when enlarging). 16-bit slices are rescaled to 8 bits and
colour slices converted to grayscale, each with a warning.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from brainvq.config import DataConfig
from brainvq.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
SPLITS = ("train", "validate", "test")
DEFAULT_DATA = Path(__file__).parent / "default_data" / "mni152_axial.npz"


@dataclass
class Splits:
    """The files (or, for embedded data, the arrays) of each split, and where they came from."""

    source: str  # keras | original | folder | volumes | default
    root: str
    files: dict[str, list[Path]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Number of slices in each split."""
        if self.arrays:
            return {k: len(v) for k, v in self.arrays.items()}
        return {k: len(v) for k, v in self.files.items()}


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


def _seeded_split(files: list, fractions: dict[str, float], seed: int) -> dict[str, list]:
    """Split a list by a seeded permutation; each named split takes its fraction, train the rest."""
    order = np.random.default_rng(seed).permutation(len(files))
    out, start = {}, 0
    for name, frac in fractions.items():
        n = int(round(frac * len(files)))
        if frac > 0 and len(files) >= 3:
            n = max(n, 1)
        out[name] = sorted((files[i] for i in order[start : start + n]), key=str)
        start += n
    out["train"] = sorted((files[i] for i in order[start:]), key=str)
    return out


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
            parts = _seeded_split(files["train"], {"validate": cfg.val_fraction}, cfg.split_seed)
            files["train"], files["validate"] = parts["train"], parts["validate"]
        if "test" not in files:
            parts = _seeded_split(files["train"], {"test": cfg.test_fraction}, cfg.split_seed + 1)
            files["train"], files["test"] = parts["train"], parts["test"]
        return Splits(source, str(root), files=files)

    from brainvq.volumes import nifti_files, nifti_folder_splits

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
    files = _seeded_split(
        all_files, {"validate": cfg.val_fraction, "test": cfg.test_fraction}, cfg.split_seed
    )
    return Splits("folder", str(root), files=files)


def _default_splits(cfg: DataConfig) -> Splits:
    with np.load(DEFAULT_DATA) as z:
        slices = z["slices"]
    idx = list(range(len(slices)))
    parts = _seeded_split(
        idx, {"validate": cfg.val_fraction, "test": cfg.test_fraction}, cfg.split_seed
    )
    arrays = {k: slices[np.array(v, dtype=np.int64)] for k, v in parts.items()}
    return Splits("default", "default", arrays=arrays)


# -- decoding -------------------------------------------------------------------------------------
def to_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-pad a 2-D uint8 array with zeros to a square, then resize to size x size."""
    h, w = img.shape
    if h != w:
        s = max(h, w)
        out = np.zeros((s, s), dtype=np.uint8)
        out[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = img
        img = out
    if img.shape[0] == size:
        return img
    method = Image.BOX if img.shape[0] > size else Image.BILINEAR
    return np.asarray(Image.fromarray(img).resize((size, size), method))


def decode_slice(path: Path) -> tuple[np.ndarray, str | None]:
    """Read one slice as 2-D uint8; returns the array and a note if it had to be converted."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "P"):
                return np.asarray(im.convert("L")), None
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                a = np.asarray(im).astype(np.float64)
                top = a.max()
                a = np.zeros_like(a) if top <= 0 else a / top * 255.0
                return np.clip(np.rint(a), 0, 255).astype(np.uint8), f"{mode} rescaled to 8-bit"
            return np.asarray(im.convert("L")), f"{mode} converted to grayscale"
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (remove or replace the file)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"{path}: corrupt or truncated image ({e}); remove or re-export it"
        ) from None


def named_slice_files(paths: list[str]) -> list[Path]:
    """The image files named, and those inside the folders named, in order."""
    files: list[Path] = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: no PNG/JPEG slices in this folder")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return files


def read_named_slices(paths: list[str], size: int) -> tuple[list[Path], np.ndarray]:
    """The slices named on a command line (files or folders of them): their paths and the
    images (N, size, size) uint8, each centre-padded to a square and resized."""
    files = named_slice_files(paths)
    return files, np.stack([to_square(decode_slice(f)[0], size) for f in files])


def cache_root(cfg: DataConfig) -> Path:
    """Folder of the decoded uint8 caches."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    env = os.environ.get("BRAINVQ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "brainvq"


def _cache_key(files: list[Path], size: int) -> str:
    h = hashlib.sha1(f"v1:{size}".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def load_uint8(files: list[Path], size: int, cfg: DataConfig, progress: bool = True) -> np.ndarray:
    """Decode files once into an (N, size, size) uint8 .npy cache and return it memory-mapped."""
    from tqdm.auto import tqdm

    root = cache_root(cfg)
    path = root / f"slices-{_cache_key(files, size)}.npy"
    if path.exists():
        try:
            arr = np.load(path, mmap_mode="r")
            if arr.shape == (len(files), size, size):
                return arr
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    out = np.empty((len(files), size, size), dtype=np.uint8)
    notes: dict[str, int] = {}
    shapes: set[tuple[int, int]] = set()
    bar = tqdm(files, desc="decoding slices", unit="img", disable=not progress or len(files) < 200)
    for i, p in enumerate(bar):
        a, note = decode_slice(p)
        shapes.add(a.shape)
        if note:
            notes[note] = notes.get(note, 0) + 1
        out[i] = to_square(a, size)
    for note, n in notes.items():
        warnings.warn(f"{n} slice(s) were {note}", stacklevel=2)
    if len(shapes) > 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sorted(shapes)[:4])
        warnings.warn(
            f"slices have mixed sizes ({listed}); each resized to {size}x{size}", stacklevel=2
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, out)
        os.replace(tmp, path)
        return np.load(path, mmap_mode="r")
    except OSError:
        return out  # cache not writable: keep the decoded slices in memory


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
