"""brainvq.data.volumes: synthetic NIfTI/Analyze volumes in the OASIS-1 disc layout -> keras PNG slices."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from brainvq import data as D
from brainvq.config import DataConfig
from brainvq.data.volumes import prepare_oasis1, slice_range, volume_slices
from brainvq.errors import DataError

SHAPE = (40, 48, 30)  # x, y, z


def brain_volume(seed: int, shape=SHAPE) -> np.ndarray:
    """A float volume: zero background, a noisy bright ellipsoid, one very bright voxel."""
    rng = np.random.default_rng(seed)
    x, y, z = (np.mgrid[: shape[0], : shape[1], : shape[2]].T / np.array(shape)).T - 0.5
    inside = (x / 0.4) ** 2 + (y / 0.45) ** 2 + (z / 0.48) ** 2 < 1
    vol = inside * (rng.uniform(300, 800) + rng.normal(0, 40, shape))
    vol = np.clip(vol, 0, None).astype(np.float32)
    vol[shape[0] // 2, shape[1] // 2, shape[2] // 2] = 5000.0  # the maximum
    return vol


def write_oasis1(discs: Path, n: int, analyze_from: int = 3) -> list[str]:
    """n subjects across disc1/disc2; the first analyze_from as NIfTI-in-.hdr/.img, the rest Analyze
    saved as 4-D (x, y, z, 1) like the OASIS .img files."""
    ids = []
    for i in range(n):
        subj = f"OAS1_{i + 1:04d}_MR1"
        folder = discs / f"disc{1 + i // 3}" / subj / "PROCESSED" / "MPRAGE" / "T88_111"
        folder.mkdir(parents=True)
        vol = brain_volume(i)
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        if i < analyze_from:
            img = nib.Nifti1Pair(vol, affine)
        else:
            img = nib.AnalyzeImage(vol[..., None], affine)
        nib.save(img, folder / f"{subj}_mpr_n4_anon_111_t88_masked_gfc.hdr")
        ids.append(subj)
    return ids


def _case_ids(folder: Path) -> set[int]:
    return {
        int(re.match(r"case_(\d+)_slice_\d+\.nii\.png$", p.name).group(1)) for p in folder.iterdir()
    }


def test_prepare_oasis1_writes_keras_layout_split_by_subject(tmp_path):
    discs, out = tmp_path / "discs", tmp_path / "out"
    ids = write_oasis1(discs, 6)
    summary = prepare_oasis1(discs, out, size=64, seed=1, progress=False)

    per_subject = len(slice_range(SHAPE[2], 0.2, 0.8))
    assert per_subject == round(0.8 * 30) - round(0.2 * 30) == 18
    seen: dict[int, str] = {}
    for split in ("train", "validate", "test"):
        folder = out / f"keras_png_slices_{split}"
        cases = _case_ids(folder)
        assert cases == {int(s[5:9]) for s in summary[split]["subjects"]}
        for c in cases:
            assert c not in seen, f"subject {c} in {seen.get(c)} and {split}"
            seen[c] = split
        files = sorted(folder.iterdir())
        assert len(files) == summary[split]["slices"] == per_subject * len(cases)
        ks = sorted(int(p.name.split("_slice_")[1].split(".")[0]) for p in files)
        assert ks[-1] == per_subject - 1
        with Image.open(files[0]) as im:
            assert im.mode == "L" and im.size == (64, 64)
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files
    assert sorted(seen) == list(range(1, 7))
    assert len(summary["train"]["subjects"]) == 4  # 6 subjects at 0.85/0.1/0.05 -> 4/1/1
    assert json.loads((out / "prepare_summary.json").read_text()) == summary
    assert sorted(s for v in summary.values() for s in v["subjects"]) == ids

    # the result is a keras layout that discover/load_splits read at the prepared size
    arrays = D.load_splits(out, DataConfig(image_size=64), progress=False)
    assert {k: len(v) for k, v in arrays.items()} == {k: v["slices"] for k, v in summary.items()}

    # same seed -> same subject split
    again = prepare_oasis1(discs, tmp_path / "out2", size=64, seed=1, progress=False)
    assert again == summary


def test_prepare_oasis1_refuses_non_empty_out_unless_overwrite(tmp_path):
    discs, out = tmp_path / "discs", tmp_path / "out"
    write_oasis1(discs, 3)
    first = prepare_oasis1(discs, out, size=32, first=0.4, last=0.6, progress=False)
    with pytest.raises(DataError, match="keras_png_slices_.*overwrite"):
        prepare_oasis1(discs, out, size=32, progress=False)
    second = prepare_oasis1(
        discs, out, size=32, first=0.0, last=1.0, seed=5, overwrite=True, progress=False
    )
    assert first["train"]["slices"] == len(slice_range(30, 0.4, 0.6)) == 6
    total = sum(len(list((out / f"keras_png_slices_{s}").iterdir())) for s in second)
    assert total == 3 * 30  # old files were cleared, not mixed in


def test_prepare_oasis1_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty.*OAS1_xxxx_MR1/PROCESSED/MPRAGE/T88_111"):
        prepare_oasis1(tmp_path / "empty", tmp_path / "out", progress=False)

    discs = tmp_path / "discs"
    write_oasis1(discs, 3)
    bad = next(discs.rglob("OAS1_0002_MR1_*.hdr"))
    bad.write_bytes(b"this is not an analyze header")
    with pytest.raises(DataError, match="OAS1_0002_MR1_mpr_n4_anon_111_t88_masked_gfc.hdr"):
        prepare_oasis1(discs, tmp_path / "out", size=32, progress=False)


def test_volume_slices_intensity_and_geometry(tmp_path):
    vol = brain_volume(0)
    p = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), p)

    full = volume_slices(p, first=0.0, last=1.0, size=64)
    assert full.dtype == np.uint8 and full.shape == (30, 64, 64)
    assert full.max() == 255 and full[:, 0, 0].max() == 0  # max -> 255, background stays 0
    # rule: clip at 0 and the 99.5th percentile of the non-zero voxels, linear to 0..255
    top = np.percentile(vol[vol > 0], 99.5)
    want = np.rint(np.clip(vol, 0, top) / top * 255).astype(np.uint8)
    z = 15
    sl = np.rot90(want[:, :, z])  # (48, 40), anterior (high y) up
    assert np.abs(full[z, 8:56, 12:52].astype(int) - sl).max() <= 1
    assert (full[z, :8] == 0).all() and (full[z, :, :12] == 0).all()

    # larger than the volume's plane -> centre-cropped, not resized
    crop = volume_slices(p, first=0.0, last=1.0, size=32)
    assert crop.shape == (30, 32, 32)
    assert np.array_equal(crop[z], full[z, 16:48, 16:48])

    # 4-D with a trailing singleton axis (Analyze, like OASIS .img) reads the same
    nib.save(nib.AnalyzeImage(vol[..., None], np.eye(4)), tmp_path / "a.hdr")
    assert (tmp_path / "a.img").exists()
    ana = volume_slices(tmp_path / "a.hdr", size=64)
    assert ana.shape == (len(slice_range(30)), 64, 64)

    # anterior is up: a bright blob at high y lands in the top rows
    blob = np.zeros(SHAPE, np.float32)
    blob[18:22, 40:44, :] = 100.0
    nib.save(nib.Nifti1Image(blob, np.eye(4)), tmp_path / "blob.nii")
    rows = np.nonzero(volume_slices(tmp_path / "blob.nii", size=48)[0].any(axis=1))[0]
    assert rows.max() < 24


def test_volume_slices_rejects_bad_files(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 3), np.float32), np.eye(4)), tmp_path / "4d.nii")
    with pytest.raises(DataError, match=r"4d\.nii.*3-D"):
        volume_slices(tmp_path / "4d.nii")
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"junk\.nii\.gz"):
        volume_slices(tmp_path / "junk.nii.gz")
    nib.save(nib.AnalyzeImage(np.ones(SHAPE, np.float32), np.eye(4)), tmp_path / "t.hdr")
    with open(tmp_path / "t.img", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError, match=r"t\.hdr.*damaged") as err:
        volume_slices(tmp_path / "t.hdr")
    assert "\n" not in str(err.value)  # one-line message


def test_discover_nifti_folder_splits_by_volume(tmp_path):
    root = tmp_path / "vols"
    root.mkdir()
    for i in range(6):
        nib.save(nib.Nifti1Image(brain_volume(i), np.eye(4)), root / f"sub{i}.nii.gz")
    cfg = DataConfig(image_size=32, val_fraction=0.2, test_fraction=0.2, split_seed=0)
    s = D.discover(root, cfg)
    assert s.source == "volumes"
    per = len(slice_range(30))
    assert s.sizes() == {"train": 4 * per, "validate": per, "test": per}  # round(1.2) = 1
    arrays = D.split_arrays(s, cfg)
    for a in arrays.values():
        assert a.dtype == np.uint8 and a.shape[1:] == (32, 32)
    # every split holds whole volumes: the per-volume blocks match one of the volumes exactly
    singles = [volume_slices(p, size=32) for p in sorted(root.glob("*.nii.gz"))]
    used = []
    for a in arrays.values():
        for j in range(0, len(a), per):
            hits = [i for i, v in enumerate(singles) if np.array_equal(v, a[j : j + per])]
            assert len(hits) == 1
            used += hits
    assert sorted(used) == list(range(6))
    assert D.discover(root, cfg).sizes() == s.sizes()  # seeded


def test_oasis1_to_report_end_to_end(tmp_path):
    """Synthetic Analyze volumes -> prepare-oasis1 -> brainvq run (tiny) -> report.html."""
    from ..conftest import TINY_OVERRIDES, brainvq

    discs = tmp_path / "discs"
    write_oasis1(discs, 6)
    out = tmp_path / "oasis"
    r = brainvq("prepare-oasis1", str(discs), str(out), "--size", "32", "--quiet")
    assert "subjects" in r.stdout
    ids = {s: _case_ids(out / f"keras_png_slices_{s}") for s in ("train", "validate", "test")}
    assert all(ids.values())
    assert not (
        ids["train"] & ids["validate"]
        or ids["train"] & ids["test"]
        or ids["validate"] & ids["test"]
    )
    run = tmp_path / "run"
    brainvq(
        "run",
        "--data",
        str(out),
        "--run",
        str(run),
        "--quiet",
        *TINY_OVERRIDES,
        "--train.max_epochs",
        "1",
        "--eval.c2st",  # what this test checks is the path from the discs to a report; the C2ST
        "false",  # (test_evaluate_c2st.py's) would take most of its time on 18 test slices
    )
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 7
    assert "samples-maskgit" in page and "vqvae" in page


def test_nifti_folder_keeps_each_subjects_sessions_together(tmp_path):
    root = tmp_path / "vols"
    names = [f"OAS1_{i:04d}_MR{m}.nii.gz" for i in (1, 2, 3) for m in (1, 2)]
    names += [f"sub-0{i}/ses-{m}/anat/sub-0{i}_ses-{m}_T1w.nii.gz" for i in (1, 2) for m in (1, 2)]
    names += ["loose.nii"]  # no subject in the name: a subject of its own
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(brain_volume(i, (8, 8, 10)), np.eye(4)), root / name)
    per = len(slice_range(10))
    for seed in range(3):
        cfg = DataConfig(image_size=8, val_fraction=0.2, test_fraction=0.2, split_seed=seed)
        s = D.discover(root, cfg)
        where = {}
        for split, subjects in s.subjects.items():
            assert len(subjects) == len(s.arrays[split]) == len(s.levels[split])
            for subject in subjects:
                where.setdefault(subject, set()).add(split)
        assert sorted(where) == ["OAS1_0001", "OAS1_0002", "OAS1_0003", "loose", "sub-01", "sub-02"]
        assert all(len(v) == 1 for v in where.values())  # both sessions in one split
        summary = s.subject_summary()
        assert summary["subjects"] == {"train": 4, "validate": 1, "test": 1}
        assert (
            summary["subjects_in_more_than_one_split"] == 0
            and summary["subjects_from"] == "volumes"
        )
    # each slice's level is its index among its volume's kept slices, 0 the lowest
    assert sorted(s.levels["test"].tolist()) == sorted(
        list(range(per)) * (len(s.levels["test"]) // per)
    )
