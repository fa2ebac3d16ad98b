"""Brains never cross splits: subjects and levels read from file names, splits by subject, leaks
reported (brainvq.data.subjects, brainvq.data.splits, brainvq.data.layouts)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from brainvq import data as D
from brainvq.config import DataConfig
from brainvq.data import subjects as S
from brainvq.data.splits import seeded_split
from brainvq.errors import ConfigError, DataError

from ..conftest import brainvq, fake_slice, tiny_config


def write_brains(folder, brains: dict[str, int], size: int = 16, name="{subject}_slice_{z}.png"):
    """PNGs of each subject's slices 0..n-1, named by `name`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for subject, n in brains.items():
        for z in range(n):
            p = folder / name.format(subject=subject, z=z)
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(fake_slice(rng, size)).save(p)
            paths.append(p)
    return paths


def split_of_each_subject(s: D.Splits) -> dict[str, set[str]]:
    where: dict[str, set[str]] = {}
    for split, subjects in s.subjects.items():
        for subject in subjects:
            where.setdefault(subject, set()).add(split)
    return where


# -- reading names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, subject, level",
    [
        ("case_001_slice_7.nii.png", "case_001", 7),  # OASIS keras PNGs
        ("case_201_slice_31.nii.png", "case_201", 31),
        ("OAS1_0001_MR1_slice_3.png", "OAS1_0001", 3),  # OASIS-1: sessions are one subject
        ("OAS1_0001_MR2_mpr_n4_anon_111_t88_masked_gfc.nii.gz", "OAS1_0001", -1),
        ("sub-01_ses-2_T1w_slice_12.png", "sub-01", 12),  # BIDS: every ses-* is one subject
        ("sub-CTRL07_T1w.nii.gz", "sub-CTRL07", -1),
        ("img_0042.png", "", -1),  # no subject, no level
        ("showcase_12_slice_1.png", "", 1),  # `case_` inside a word is no subject
    ],
)
def test_subjects_and_levels_are_read_from_names(name, subject, level):
    assert S.subject_of(name) == subject
    assert S.level_of(name) == level


def test_a_folder_name_gives_the_subject_when_the_file_name_has_none(tmp_path):
    f = tmp_path / "sub-02" / "anat" / "slice_3.png"
    assert S.subject_of(f, tmp_path) == "sub-02"
    assert S.subject_of(f, tmp_path / "sub-02") == ""  # only folders below the data folder
    assert S.subject_of(tmp_path / "case_9_x" / "case_4_slice_0.png", tmp_path) == "case_4"


def test_a_user_pattern_wins(tmp_path):
    name = "case_001_patient7_slice_2.png"
    assert S.subject_of(name, pattern=r"patient(\d+)") == "7"  # its group
    assert S.subject_of(name, pattern=r"patient\d+") == "patient7"  # no group: the whole match
    assert S.subject_of("sub-01_T1w.png", pattern=r"patient(\d+)") == ""  # built-ins are off
    # and discover splits by it: four patients, each with slices named case_* of other numbers
    root = tmp_path / "plain"
    write_brains(root, {f"case_{i}_patient{i // 3}": 1 for i in range(12)})
    cfg = DataConfig(val_fraction=0.25, test_fraction=0.25, subject_pattern=r"patient(\d+)")
    s = D.discover(root, cfg)
    assert sorted(set(np.concatenate(list(s.subjects.values())))) == ["0", "1", "2", "3"]
    assert all(len(v) == 1 for v in split_of_each_subject(s).values())
    assert s.subject_summary()["subjects_from"] == "data.subject_pattern"


@pytest.mark.parametrize(
    "pattern, needle",
    [
        ("patient(\\d+", "not a regular expression"),
        ("a{4294967296}", "not a regular expression"),
        ("(p)(\\d+)", "has 2 groups"),
    ],
)
def test_subject_pattern_is_checked_with_one_line_naming_the_setting(pattern, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        DataConfig(subject_pattern=pattern).validate()
    assert str(err.value).startswith("data.subject_pattern = ") and "\n" not in str(err.value)


def test_cli_refuses_a_bad_subject_pattern():
    r = brainvq("config", "--data.subject_pattern", "(a)(b)", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "data.subject_pattern" in r.stderr and "Traceback" not in r.stderr


# -- the split helper ------------------------------------------------------------------------------
def test_seeded_split_keeps_groups_whole_and_counts_them():
    items = [f"s{g}_z{z}" for g in range(10) for z in range(5)]
    groups = [i.split("_")[0] for i in items]
    for seed in range(5):
        parts = seeded_split(items, {"validate": 0.2, "test": 0.1}, seed, groups)
        held = {split: {i.split("_")[0] for i in v} for split, v in parts.items()}
        assert [len(held[k]) for k in ("train", "validate", "test")] == [7, 2, 1]
        assert sum(len(v) for v in parts.values()) == 50
        assert not (held["train"] & held["validate"] or held["train"] & held["test"])
    # items without a group are groups of one; no groups at all is the old split by item
    assert seeded_split(items, {"test": 0.1}, 3) == seeded_split(items, {"test": 0.1}, 3, [""] * 50)


# -- splits brainvq makes keep each subject whole --------------------------------------------------
def test_plain_folder_of_two_subjects_never_splits_a_subject(tmp_path):
    root = tmp_path / "plain"
    write_brains(root, {"case_001": 12, "case_002": 12})
    for seed in range(4):
        for val, test in ((0.1, 0.1), (0.0, 0.5), (0.5, 0.4)):
            s = D.discover(root, DataConfig(val_fraction=val, test_fraction=test, split_seed=seed))
            assert all(len(v) == 1 for v in split_of_each_subject(s).values()), (seed, val, test)
            assert s.subject_summary()["subjects_in_more_than_one_split"] == 0
    s = D.discover(root, DataConfig(val_fraction=0.0, test_fraction=0.5))
    assert sorted(s.sizes().values()) == [0, 12, 12]
    assert sorted(s.levels["test"]) == list(range(12))  # slice_Z kept with each slice
    # with the default shares two subjects leave test empty: said, with the subjects counted
    with pytest.raises(
        DataError, match="test split is empty .2 subject.s. in all, each kept whole"
    ):
        D.load_data(root, DataConfig(image_size=16))


def test_keras_layout_without_validate_and_test_splits_train_by_subject(tmp_path):
    root = tmp_path / "k"
    write_brains(root / "keras_png_slices_train", {f"case_{i:03d}": 4 for i in range(20)})
    s = D.discover(root, DataConfig(val_fraction=0.1, test_fraction=0.1))
    assert s.subject_summary()["subjects"] == {"train": 16, "validate": 2, "test": 2}
    assert s.sizes() == {"train": 64, "validate": 8, "test": 8}
    assert all(len(v) == 1 for v in split_of_each_subject(s).values())


def test_original_layout_missing_validate_is_split_by_subject(tmp_path):
    root = tmp_path / "proj"
    write_brains(root / "oasis/train/keras_png_slices_train", {f"case_{i}": 3 for i in range(10)})
    write_brains(root / "oasis/test/keras_png_slices_test", {"case_50": 3, "case_51": 3})
    s = D.discover(root, DataConfig(val_fraction=0.2))
    assert s.source == "original"
    assert s.subject_summary()["subjects"] == {"train": 8, "validate": 2, "test": 2}
    assert s.subject_summary()["subjects_in_more_than_one_split"] == 0


def test_names_without_subjects_warn_once_naming_the_setting_then_split_slices(tmp_path):
    root = tmp_path / "k"
    write_brains(
        root / "keras_png_slices_train", {f"img{i}": 1 for i in range(20)}, name="{subject}.png"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = D.discover(root, DataConfig())  # two splits made: validate, then test
        D.discover(root, DataConfig())  # and a later stage loading the same data
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "data.subject_pattern" in said[0] and "no slice name" in said[0]
    assert s.sizes() == {"train": 16, "validate": 2, "test": 2}  # split slice by slice
    summary = s.subject_summary()
    assert summary["subjects_in_more_than_one_split"] is None and summary["subjects_from"] == "none"
    assert "none read from the file names" in S.describe(summary)
    assert "data.subject_pattern" in S.describe(summary)


def test_a_complete_keras_layout_is_not_split_so_no_names_no_warning(tmp_path):
    root = tmp_path / "k"
    for split in ("train", "validate", "test"):
        write_brains(
            root / f"keras_png_slices_{split}",
            {f"{split}{i}": 1 for i in range(3)},
            name="{subject}.png",
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = D.discover(root, DataConfig())
    assert caught == [] and s.sizes() == {"train": 3, "validate": 3, "test": 3}


# -- leaks -----------------------------------------------------------------------------------------
def leaking_keras(root):
    """A keras layout made by someone else: test holds slices of two training subjects."""
    write_brains(root / "keras_png_slices_train", {f"case_{i}": 4 for i in range(6)}, size=32)
    write_brains(root / "keras_png_slices_validate", {"case_10": 4}, size=32)
    write_brains(
        root / "keras_png_slices_test",
        {"case_0": 2, "case_3": 2, "case_11": 2},
        size=32,
    )
    return root


def test_a_keras_layout_whose_test_subjects_are_in_train_is_reported_as_leaking(tmp_path):
    s = D.discover(leaking_keras(tmp_path / "k"), DataConfig())
    summary = s.subject_summary()
    assert summary["subjects"] == {"train": 6, "validate": 1, "test": 3}
    assert summary["subjects_in_more_than_one_split"] == 2
    assert summary["shared_subjects"] == {"case_0": ["train", "test"], "case_3": ["train", "test"]}
    line = S.describe(summary)
    assert line == "subjects: train 6, validate 1, test 3; 2 subjects in more than one split"
    warning = S.leak_warning(summary)
    assert (
        "2 subject(s) have slices in more than one split" in warning
        and "case_3 in train, test" in warning
    )


def test_train_vqvae_and_evaluate_state_subjects_and_warn_of_a_leak(tmp_path, monkeypatch):
    from brainvq.evaluation.evaluate import evaluate_data, format_data
    from brainvq.reporting.report import render
    from brainvq.runs import RunDir
    from brainvq.training.vqvae import describe, train_vqvae

    root = leaking_keras(tmp_path / "k")
    run = tmp_path / "run"
    cfg = tiny_config(max_epochs=1, max_steps=1)
    with pytest.warns(UserWarning, match="2 subject.s. have slices in more than one split"):
        result = train_vqvae(str(root), str(run), cfg, progress=False)
    assert describe(result).splitlines()[0].endswith("; 2 subjects in more than one split")
    record = json.loads((run / "data.json").read_text())
    assert record["subjects"] == {"train": 6, "validate": 1, "test": 3}
    assert record["subjects_in_more_than_one_split"] == 2 and record["data"] == str(root)
    again = train_vqvae(str(root), str(run), cfg, progress=False)  # reused: said from data.json
    assert describe(again).splitlines()[0] == describe(result).splitlines()[0]

    monkeypatch.setattr(S, "_SAID", set())  # as in a new process: evaluate warns again
    with pytest.warns(UserWarning, match="in more than one split"):
        data = evaluate_data(str(run))
    assert json.loads((run / "metrics.json").read_text())["data"] == data
    assert format_data(data).splitlines()[0] == describe(result).splitlines()[0]
    page = render(RunDir(run))
    assert "<th>subjects in more than one split</th><td>2</td>" in page
    assert "class='warn'" in page and "case_0 in train, test" in page


def test_report_data_section_says_one_brain_for_the_default_data():
    from brainvq.reporting.report import data_html

    one = {**S.summarize({"train": np.array(["a"], object)}, "t", one_brain=True)}
    page = data_html({**one, "real_test_near_twin_share": 0.9})
    assert "scores compare levels of one brain, not new brains" in page
    assert "class='warn'" not in page  # one brain shared by the splits on purpose: no leak
    clean = S.summarize(
        {"train": np.array(["a"], object), "test": np.array(["b"], object)}, "names"
    )
    page = data_html({**clean, "real_test_near_twin_share": 0.75})
    assert "<td>0</td>" in page and "75% of the real test slices have a near-twin" in page
    assert data_html(None) == ""


# -- the embedded default and levels ---------------------------------------------------------------
def test_default_data_is_one_brain_split_by_slice_with_its_levels():
    s = D.discover("default", DataConfig(image_size=128))
    summary = s.subject_summary()
    assert summary["one_brain"] and summary["subjects"] == {"train": 1, "validate": 1, "test": 1}
    assert S.describe(summary).endswith("scores compare levels of one brain, not new brains")
    assert S.leak_warning(summary) is None
    levels = np.sort(np.concatenate(list(s.levels.values())))
    assert np.array_equal(levels, np.arange(levels[0], levels[0] + 132))  # consecutive levels
    rel = s.relative_levels()
    allrel = np.concatenate(list(rel.values()))
    assert allrel.min() == 0.0 and allrel.max() == 1.0
    for split, arr in D.split_arrays(s, DataConfig(image_size=128)).items():
        assert len(arr) == len(s.subjects[split]) == len(s.levels[split]) == len(rel[split])


def test_relative_levels_are_per_subject_over_every_split():
    subjects = {
        "train": np.array(["a", "a", "b", ""], object),
        "test": np.array(["a", "b"], object),
    }
    levels = {"train": np.array([4, 6, 3, 2]), "test": np.array([8, -1])}
    rel = S.relative_levels(subjects, levels)
    assert rel["train"][:3].tolist() == [0.0, 0.5, 0.5]  # b has one known level: 0.5
    assert np.isnan(rel["train"][3]) and rel["test"][0] == 1.0 and np.isnan(rel["test"][1])
