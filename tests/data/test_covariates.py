"""Subject tables: OASIS-1's own columns, missing values, subjects on one side only, bad files
(brainvq.data.covariates), and prepare-oasis1 keeping the table."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from brainvq import data as D
from brainvq.config import DataConfig
from brainvq.data.covariates import covariate_record, find_table, load_table, read_table
from brainvq.data.volumes import prepare_oasis1
from brainvq.errors import DataError

from ..conftest import SHARED_128
from .test_volumes import write_oasis1

# OASIS-1's oasis_cross-sectional.csv, its header and rows as they come (values made up here)
OASIS1_CSV = """ID,M/F,Hand,Age,Educ,SES,MMSE,CDR,eTIV,nWBV,ASF,Delay
OAS1_0001_MR1,F,R,74,2,3,29,0,1344,0.743,1.306,N/A
OAS1_0002_MR1,F,R,55,4,1,29,0,1147,0.81,1.531,N/A
OAS1_0003_MR1,F,R,73,4,3,27,0.5,1454,0.708,1.207,N/A
OAS1_0004_MR1,M,R,28,,,,,1588,0.803,1.105,N/A
OAS1_0005_MR1,M,R,18,,,,,1737,0.848,1.01,N/A
OAS1_0003_MR2,F,R,73,4,3,27,0.5,1460,0.709,1.2,23
"""


def write(tmp_path, text: str, name: str = "table.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_oasis1_columns_read_as_they_come(tmp_path):
    t = read_table(write(tmp_path, OASIS1_CSV))
    # ID OAS1_0001_MR1 is subject OAS1_0001; the MR2 session is the same subject: a later row
    assert t.subjects == [f"OAS1_000{i}" for i in range(1, 6)]
    assert t.duplicates == {"OAS1_0003": "OAS1_0003_MR2"}
    c = t.covariates
    assert list(c) == ["m_f", "hand", "age", "educ", "ses", "mmse", "cdr", "etiv", "nwbv", "asf"]
    assert t.skipped == {"Delay": "no values"}  # N/A but in the MR2 row, which is not used
    assert c["m_f"].kind == "categorical" and c["m_f"].levels == ("F", "M")
    assert c["hand"].levels == ("R",)
    assert c["age"].kind == "continuous" and c["age"].values["OAS1_0002"] == 55.0
    assert c["cdr"].kind == "continuous" and c["cdr"].values == {
        "OAS1_0001": 0.0,
        "OAS1_0002": 0.0,
        "OAS1_0003": 0.5,
    }
    assert c["nwbv"].describe()["range"] == [0.708, 0.848]
    assert t.missing["mmse"] == ["OAS1_0004", "OAS1_0005"]
    # per slice: values (continuous) and level indices (categorical), NaN where unknown
    v = t.slice_values(np.array(["OAS1_0004", "OAS1_0001", "OAS1_0001", "case_9"], dtype=object))
    assert v["m_f"].tolist()[:3] == [1.0, 0.0, 0.0] and math.isnan(v["m_f"][3])
    assert v["age"].tolist()[:3] == [28.0, 74.0, 74.0]
    assert math.isnan(v["cdr"][0]) and v["cdr"][1] == 0.0


def test_each_kind_of_gap_is_one_line_with_counts_and_examples(tmp_path):
    t = read_table(write(tmp_path, OASIS1_CSV))
    data = {"OAS1_0001", "OAS1_0002", "OAS1_0003", "OAS1_0009", "OAS1_0010"}
    lines = t.report(data)
    assert len(lines) == 4 and all("\n" not in line for line in lines)
    missing, dup, unknown, rowless = lines
    assert "8 missing value(s)" in missing and "mmse 2" in missing and "e.g." in missing
    assert "OAS1_0003" in dup and "first row" in dup
    assert "2 of 5 subjects have no slices" in unknown and "OAS1_0004" in unknown
    assert "2 of 5 subjects of the data have no row" in rowless and "OAS1_0009" in rowless
    # all well: no lines
    clean = read_table(write(tmp_path, "subject,age\ncase_1,70\ncase_2,71\n", "ok.csv"))
    assert clean.report({"case_1", "case_2"}) == []


def test_subject_column_beside_an_id_column_is_the_key(tmp_path):
    text = "subject,ID,sex,score\ncase_1,OAS1_0001_MR1,F,1.5\ncase_2,OAS1_0002_MR1,M,NA\n"
    t = read_table(write(tmp_path, text))
    assert t.subjects == ["case_1", "case_2"]
    assert t.skipped == {"ID": "identifier"} and list(t.covariates) == ["sex", "score"]
    assert t.covariates["score"].values == {"case_1": 1.5}


@pytest.mark.parametrize(
    "text, says",
    [
        (None, "not found"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a text"),
        ("", "empty"),
        ("name,age\ncase_1,70\n", "no 'subject'"),
        ("subject,age\ncase_1,70,3\n", "row 2 has 3 fields"),
        ("subject,Age,age\ncase_1,70,70\n", "both read as covariate age"),
    ],
)
def test_a_bad_table_is_one_line_naming_the_file_and_the_fix(tmp_path, text, says):
    path = tmp_path / "bad.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(DataError) as e:
        read_table(path)
    message = str(e.value)
    assert str(path) in message and says in message and "\n" not in message


def test_table_is_found_beside_the_data_or_named(tmp_path, keras_root):
    assert find_table("", keras_root) is None  # no subjects.csv there
    (keras_root / "subjects.csv").write_text("subject,group\ncase_1000,a\n")
    assert find_table("", keras_root) == keras_root / "subjects.csv"
    assert find_table("none", keras_root) is None
    assert find_table("subjects.csv", keras_root) == keras_root / "subjects.csv"
    assert find_table("", "default") is None


def test_data_json_record_lists_covariates_and_warns_each_gap_once(keras_root):
    splits = D.discover(keras_root, DataConfig())
    subjects = sorted({s for v in splits.subjects.values() for s in v})
    rows = [f"{s},{70 + i},{'F' if i % 2 else 'M'}" for i, s in enumerate(subjects[1:])]
    (keras_root / "subjects.csv").write_text("subject,age,sex\n" + "\n".join(rows) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = covariate_record(splits, "", keras_root)
    assert record["subjects_table"] == str(keras_root / "subjects.csv")
    age, sex, *measured = record["covariates"]
    assert [m["name"] for m in measured] == ["brain_fraction", "ventricle_fraction"]
    assert {m["per"] for m in measured} == {"slice"} and age["per"] == "subject"
    assert age["name"] == "age" and age["type"] == "continuous"
    assert age["range"] == [70.0, 70.0 + len(subjects) - 2]
    assert age["subjects"] == len(subjects) - 1
    assert sex["type"] == "categorical" and sex["levels"] == ["F", "M"]
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and f"1 of {len(subjects)} subjects of the data have no row" in said[0]
    json.dumps(record)  # data.json holds it


def test_prepare_oasis1_keeps_the_table_as_subjects_csv(tmp_path):
    discs, out = tmp_path / "discs", tmp_path / "out"
    write_oasis1(discs, 3)
    (discs / "oasis_cross-sectional.csv").write_text(OASIS1_CSV)
    summary = prepare_oasis1(discs, out, size=32, first=0.4, last=0.6, progress=False)
    assert summary["subjects_table"]["rows"] == 3 and summary["subjects_table"]["of"] == 6
    t = read_table(out / "subjects.csv")
    assert t.subjects == ["case_1", "case_2", "case_3"]  # the names the slices carry
    assert t.skipped["ID"] == "identifier" and t.covariates["cdr"].values["case_3"] == 0.5
    splits = D.discover(out, DataConfig(image_size=32))
    table = load_table("", out, splits.subjects)
    assert table is not None
    assert table.report({s for v in splits.subjects.values() for s in v}) == []


@pytest.mark.skipif(not SHARED_128.is_dir(), reason="shared dev data absent")
def test_dev_data_table_matches_its_slices():
    splits = D.discover(SHARED_128, DataConfig(image_size=128))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no gap to report
        table = load_table("", SHARED_128, splits.subjects)
    assert table is not None and set(table.covariates) == {"diagnosis", "cdr"}
    cdr = table.slice_values(splits.subjects["train"])["cdr"]
    assert not np.isnan(cdr).any() and set(np.unique(cdr)) <= {0.0, 1.0, 2.0}
