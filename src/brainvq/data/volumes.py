"""MRI volumes -> 8-bit axial slices: raw OASIS-1 discs to the keras PNG layout, NIfTI folders.

Slice-range rule: a volume with nz axial slices (after reorienting to the closest RAS+ canonical
orientation, axial = last axis) keeps slices z = round(first * nz) .. round(last * nz) - 1, i.e.
the [first, last) fraction of its z extent (first=0, last=1 keeps every slice; the defaults 0.2 and
0.8 keep the middle 60%, where the brain is largest). Slice k of a subject is the k-th kept slice.

Intensity rule: per volume, values are clipped to [0, top] where top is the 99.5th percentile of
the volume's non-zero (positive) voxels, then mapped linearly to 0..255 and rounded; so 0 stays 0
and the brightest 0.5% saturate at 255 (NaNs count as 0; a volume with no positive voxel is all 0).

Each slice is rotated so anterior is up (np.rot90 of the RAS+ x-y plane), then centre-padded with
zeros or centre-cropped to size x size; it is never resized.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from brainvq.config import DataConfig
from brainvq.data.splits import SPLITS, seeded_split
from brainvq.data.subjects import subject_of
from brainvq.errors import ConfigError, DataError
from brainvq.io import atomic_path, atomic_write_bytes, atomic_write_text
from brainvq.progress import Progress

OASIS1_PATTERN = (
    "OAS1_xxxx_MR1/PROCESSED/MPRAGE/T88_111/OAS1_xxxx_MR1_mpr_n4_anon_111_t88_masked_gfc.hdr"
)
_OASIS1_RE = re.compile(r"^OAS1_(\d+)_MR1$")
_OASIS1_SUFFIX = "_mpr_n4_anon_111_t88_masked_gfc.hdr"


def _check_range(first: float, last: float, size: int) -> None:
    if not 0.0 <= first < last <= 1.0:
        raise ConfigError(f"slice range first={first}, last={last}: need 0 <= first < last <= 1")
    if size < 1:
        raise ConfigError(f"size={size}: the slice side must be a positive number of pixels")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _load_volume(path: Path) -> np.ndarray:
    """The 3-D float32 voxel array of a NIfTI/Analyze file in RAS+ canonical orientation."""
    fix = "re-extract or replace the file, or remove it"
    try:
        img = nib.squeeze_image(nib.load(str(path)))  # (x, y, z, 1) -> (x, y, z)
        if len(img.shape) != 3:
            raise DataError(
                f"{path}: volume has shape {tuple(img.shape)}, expected 3-D (x, y, z); "
                "give one 3-D structural volume per file"
            )
        img = nib.as_closest_canonical(img)
        vol = np.asarray(img.get_fdata(dtype=np.float32))
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{path}: volume file missing ({_one_line(e)}); {fix}") from None
    except Exception as e:  # nibabel raises many types (ImageFileError, HeaderDataError, ...)
        raise DataError(
            f"{path}: not a readable NIfTI/Analyze volume ({_one_line(e)}); {fix}"
        ) from None
    return vol


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-pad with zeros or centre-crop each axis of a 2-D array to `size` (no resizing)."""
    out = np.zeros((size, size), dtype=img.dtype)
    src, dst = [], []
    for n in img.shape:
        if n >= size:
            o = (n - size) // 2
            src.append(slice(o, o + size))
            dst.append(slice(0, size))
        else:
            o = (size - n) // 2
            src.append(slice(0, n))
            dst.append(slice(o, o + n))
    out[tuple(dst)] = img[tuple(src)]
    return out


def slice_range(nz: int, first: float = 0.2, last: float = 0.8) -> range:
    """The axial indices kept from a volume of nz slices: round(first*nz) .. round(last*nz) - 1."""
    return range(int(round(first * nz)), int(round(last * nz)))


def to_uint8(vol: np.ndarray) -> np.ndarray:
    """Clip to [0, 99.5th percentile of the positive voxels], map linearly to 0..255 (uint8)."""
    vol = np.nan_to_num(vol.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    positive = vol[vol > 0]
    if positive.size == 0:
        return np.zeros(vol.shape, dtype=np.uint8)
    top = float(np.percentile(positive, 99.5))
    scaled = np.clip(vol, 0.0, top) * np.float32(255.0 / top)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def volume_slices(path: Path, first: float = 0.2, last: float = 0.8, size: int = 256) -> np.ndarray:
    """Axial uint8 (n, size, size) slices of one .nii/.nii.gz/.hdr volume (rules in module doc).

    Intensities: clipped at 0 and at the volume's 99.5th percentile of non-zero voxels, mapped
    linearly to 0..255. Slices: z in round(first*nz) .. round(last*nz) - 1 after reorienting to
    RAS+, rotated anterior-up, centre-padded/cropped to size x size (never resized).
    """
    _check_range(first, last, size)
    path = Path(path)
    vol = to_uint8(_load_volume(path))
    zs = slice_range(vol.shape[2], first, last)
    out = np.zeros((len(zs), size, size), dtype=np.uint8)
    for k, z in enumerate(zs):
        out[k] = _fit(np.rot90(vol[:, :, z]), size)
    return out


# what a written volume's header says of its spacing (the NIfTI description holds 80 bytes)
ASSUMED_SPACING = "brainvq synthetic stack; voxel spacing {:g} mm is an assumption, not learned"


def write_volume(path: str | Path, slices: np.ndarray, spacing: float = 1.0) -> Path:
    """Axial slices (S, H, W) in [0, 1], lowest first and anterior up (as volume_slices gives
    them), as a gzipped NIfTI-1 volume of uint8 voxels in RAS+ orientation (the inverse of
    volume_slices' rotation), ``spacing`` mm on every axis centred on the origin. The spacing is
    an assumption the header's description says so (sform code 2, "aligned": no scanner space is
    claimed). Written atomically; returns the path."""
    u8 = np.clip(np.rint(np.asarray(slices, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    vol = np.ascontiguousarray(np.stack([np.rot90(s, -1) for s in u8], axis=2))  # (x, y, z)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -spacing * (np.array(vol.shape) - 1) / 2
    img = nib.Nifti1Image(vol, affine)
    img.set_sform(affine, code=2)
    img.set_qform(affine, code=2)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = ASSUMED_SPACING.format(spacing).encode()[:79]
    atomic_write_bytes(path, gzip.compress(img.to_bytes(), mtime=0))
    return Path(path)


# -- raw OASIS-1 -> keras PNG layout ----------------------------------------------------------------
def find_oasis1(discs_dir: Path) -> dict[str, Path]:
    """Subject id (OAS1_xxxx_MR1) -> its T88 masked gain-field-corrected .hdr, found recursively."""
    discs_dir = Path(discs_dir).expanduser()
    if not discs_dir.is_dir():
        raise DataError(
            f"{discs_dir}: OASIS-1 discs folder not found (give the folder of disc1...)"
        )
    found: dict[str, Path] = {}
    for hdr in sorted(discs_dir.rglob(f"OAS1_*_MR1{_OASIS1_SUFFIX}")):
        parts = hdr.parts
        if len(parts) < 5 or parts[-4:-1] != ("PROCESSED", "MPRAGE", "T88_111"):
            continue
        subject = parts[-5]
        if not _OASIS1_RE.match(subject) or hdr.name != subject + _OASIS1_SUFFIX:
            continue
        if subject in found:
            raise DataError(
                f"{hdr}: subject {subject} also found at {found[subject]}; "
                "keep one copy of each subject under the discs folder"
            )
        found[subject] = hdr
    if not found:
        raise DataError(
            f"{discs_dir}: no OASIS-1 volumes found (expected .../{OASIS1_PATTERN}, e.g. "
            "disc1/OAS1_0001_MR1/...); point at the folder holding the extracted discs"
        )
    return found


def _write_png(arr: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty keras_png_slices_* folder in out, or clear our three when overwriting."""
    out.mkdir(parents=True, exist_ok=True)
    busy = sorted(d for d in out.glob("keras_png_slices_*") if d.is_dir() and any(d.iterdir()))
    if busy and not overwrite:
        raise DataError(
            f"{busy[0]}: output folder already holds slices; choose an empty OUT or pass "
            "overwrite=True (--overwrite) to replace them"
        )
    for split in SPLITS:
        d = out / f"keras_png_slices_{split}"
        if d.is_dir():
            for p in d.iterdir():
                leftover = p.name.startswith(".") and ".png." in p.name  # a killed write's temp
                if p.is_file() and (p.suffix.lower() == ".png" or leftover):
                    p.unlink()


def prepare_oasis1(
    discs_dir: Path,
    out: Path,
    first: float = 0.2,
    last: float = 0.8,
    size: int = 256,
    split: tuple[float, float, float] = (0.85, 0.1, 0.05),
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Slice raw OASIS-1 volumes into out/keras_png_slices_{train,validate,test}, split by subject.

    Subjects (not slices) are split by a seeded permutation in the given (train, validate, test)
    proportions; files are named case_{subject number}_slice_{k}.nii.png. Returns and writes
    out/prepare_summary.json: {split: {"subjects": [...], "slices": n}}.
    """
    _check_range(first, last, size)
    if len(split) != 3 or any(f < 0 for f in split) or split[0] <= 0:
        raise ConfigError(
            f"split={split}: need three shares (train, validate, test), train > 0, none negative"
        )
    out = Path(out).expanduser()
    subjects = find_oasis1(discs_dir)
    total = sum(split)
    shares = {"validate": split[1] / total, "test": split[2] / total}
    names = sorted(subjects)  # OAS1_xxxx_MR1: one session per subject, split by subject
    assignment = seeded_split(names, shares, seed, groups=[subject_of(n) for n in names])
    _prepare_out(out, overwrite)

    summary: dict = {s: {"subjects": assignment[s], "slices": 0} for s in SPLITS}
    jobs = [(s, subj) for s in SPLITS for subj in assignment[s]]
    with Progress(len(jobs), "slicing OASIS-1", "subject", progress) as bar:
        for s, subj in jobs:
            folder = out / f"keras_png_slices_{s}"
            folder.mkdir(exist_ok=True)
            number = int(_OASIS1_RE.match(subj).group(1))
            slices = volume_slices(subjects[subj], first=first, last=last, size=size)
            for k, img in enumerate(slices):
                _write_png(img, folder / f"case_{number}_slice_{k}.nii.png")
            summary[s]["slices"] += len(slices)
            bar.update()
    for s in SPLITS:  # a split with no subjects leaves no (empty) folder behind
        d = out / f"keras_png_slices_{s}"
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()

    table = copy_oasis1_table(Path(discs_dir).expanduser(), out, {s: assignment[s] for s in SPLITS})
    if table:
        summary["subjects_table"] = table
    atomic_write_text(out / "prepare_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def copy_oasis1_table(discs_dir: Path, out: Path, assignment: dict[str, list[str]]) -> dict | None:
    """OASIS-1's own table (oasis_cross-sectional.csv, found under discs_dir) as out/subjects.csv:
    a `subject` column with the names the slices were written under (case_N for OAS1_000N_MR1),
    then the original columns as they come, one row per sliced session (others left out).
    Returns {"from", "to", "rows", "of"} or None where discs_dir holds no such table."""
    found = sorted(
        p
        for p in discs_dir.rglob("*.csv")
        if "cross" in p.name.lower() and "oasis" in p.name.lower()
    )
    if not found:
        return None
    sliced = {subj for subjects in assignment.values() for subj in subjects}
    try:
        rows = list(csv.reader(io.StringIO(found[0].read_bytes().decode("utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(
            f"{found[0]}: not a readable CSV ({_one_line(e)}); remove or fix it"
        ) from None
    header = [h.strip() for h in rows[0]] if rows else []
    if "ID" not in header:
        raise DataError(f"{found[0]}: no ID column; give OASIS-1's oasis_cross-sectional.csv")
    key = header.index("ID")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subject", *header])
    kept = [r for r in rows[1:] if len(r) == len(header) and r[key].strip() in sliced]
    for r in kept:
        w.writerow([f"case_{int(_OASIS1_RE.match(r[key].strip()).group(1))}", *r])
    atomic_write_text(out / "subjects.csv", buf.getvalue())
    return {"from": str(found[0]), "to": str(out / "subjects.csv"), "rows": len(kept),
            "of": len(rows) - 1}  # fmt: skip


def describe(summary: dict, out: str | Path) -> str:
    """What prepare_oasis1 wrote, a line per split."""
    lines = [
        f"{split:<9} {len(info['subjects']):>4} subjects {info['slices']:>6} slices"
        for split, info in summary.items()
        if split in SPLITS
    ]
    table = summary.get("subjects_table")
    if table:
        lines.append(
            f"subjects.csv: {table['rows']} of the {table['of']} rows of {table['from']} (the "
            "sliced sessions), with a subject column naming their slices"
        )
    also = " and subjects.csv" if table else ""
    lines.append(f"-> {out}/keras_png_slices_{{train,validate,test}}, prepare_summary.json{also}")
    return "\n".join(lines)


# -- a folder of NIfTI volumes as a data source -----------------------------------------------------
def nifti_files(root: Path) -> list[Path]:
    """The .nii/.nii.gz files under root (recursively, hidden paths skipped), sorted."""
    root = Path(root)
    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or not p.is_file():
            continue
        if p.name.lower().endswith((".nii", ".nii.gz")):
            files.append(p)
    return files


def _volume_name(path: Path, root: Path) -> str:
    """A volume's path below root without .nii/.nii.gz: its subject when its name has none."""
    rel = path.relative_to(root).as_posix()
    return re.sub(r"\.nii(\.gz)?$", "", rel, flags=re.IGNORECASE)


def nifti_folder_splits(
    root: Path, cfg: DataConfig
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], str]:
    """uint8 (N, S, S) axial slices per split of a folder of NIfTI volumes, split by subject:
    one subject's volumes (OAS1_0001_MR1 and _MR2, BIDS ses-*) stay together, and a volume whose
    name carries no subject is one of its own. Also each slice's subject and level (its index
    among the volume's kept slices, 0 the lowest), and where the subjects came from."""
    root = Path(root)
    vols = nifti_files(root)
    if len(vols) < 3:
        raise DataError(
            f"{root}: only {len(vols)} NIfTI volume(s); at least 3 are needed to split by volume"
        )
    read = [subject_of(v, root, cfg.subject_pattern) for v in vols]
    subject = {v: s or _volume_name(v, root) for v, s in zip(vols, read, strict=True)}
    parts = seeded_split(
        vols,
        {"validate": cfg.val_fraction, "test": cfg.test_fraction},
        cfg.split_seed,
        groups=read,
    )
    size = cfg.image_size
    arrays, subjects, levels = {}, {}, {}
    for s in SPLITS:
        chunks = [volume_slices(v, size=size) for v in parts.get(s, [])]
        arrays[s] = np.concatenate(chunks) if chunks else np.zeros((0, size, size), dtype=np.uint8)
        subjects[s] = np.array(
            [subject[v] for v, c in zip(parts.get(s, []), chunks, strict=True) for _ in c],
            dtype=object,
        )
        levels[s] = np.concatenate(
            [np.arange(len(c), dtype=np.int64) for c in chunks] or [np.zeros(0, np.int64)]
        )
    if all(read):
        how = "data.subject_pattern" if cfg.subject_pattern else "names"
    else:
        how = "volumes"
    return arrays, subjects, levels, how
