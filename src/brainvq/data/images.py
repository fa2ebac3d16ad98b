"""One slice file -> a 2-D uint8 array at the model's size, and the decoded uint8 cache.

Size rule: each slice is centre-padded with zeros to a square, then resized to data.image_size
(area averaging when shrinking, bilinear when enlarging). 16-bit slices are rescaled to 8 bits and
colour slices converted to grayscale, each with a warning.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from brainvq.config import DataConfig
from brainvq.errors import BrainVQError, DataError
from brainvq.io import atomic_write_bytes
from brainvq.progress import Progress

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


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
    images (N, size, size) uint8, each centre-padded to a square and resized. One warning per
    kind of change names the slices that were converted (colour, 16-bit) or resized."""
    files = named_slice_files(paths)
    images, changed = [], {}
    for f in files:
        a, note = decode_slice(f)
        if a.shape != (size, size):
            h, w = a.shape
            changed.setdefault(f"resized from {w}x{h} to {size}x{size}", []).append(f.name)
        if note:
            changed.setdefault(note, []).append(f.name)
        images.append(to_square(a, size))
    for what, names in changed.items():
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        warnings.warn(f"{len(names)} slice(s) were {what}: {listed}", stacklevel=2)
    return files, np.stack(images)


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save one array as .npy atomically (brainvq.io.atomic_path)."""
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


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
    with Progress(len(files), "decoding slices", "img", progress and len(files) >= 200) as bar:
        for i, p in enumerate(files):
            a, note = decode_slice(p)
            shapes.add(a.shape)
            if note:
                notes[note] = notes.get(note, 0) + 1
            out[i] = to_square(a, size)
            bar.update()
    for note, n in notes.items():
        warnings.warn(f"{n} slice(s) were {note}", stacklevel=2)
    if len(shapes) > 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sorted(shapes)[:4])
        warnings.warn(
            f"slices have mixed sizes ({listed}); each resized to {size}x{size}", stacklevel=2
        )
    try:
        atomic_save_npy(path, out)
        return np.load(path, mmap_mode="r")
    except (OSError, BrainVQError):
        return out  # cache not writable: keep the decoded slices in memory
