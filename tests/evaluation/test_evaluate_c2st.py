"""evaluate's classifier two-sample test: folds by brain, reconstructions paired with their slices,
the rows and the plain-words line, and a skip where the test split is too small."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainvq.config import Config, EvalConfig
from brainvq.data import Splits
from brainvq.evaluation.evaluate import (
    evaluate_samples,
    evaluate_vqvae,
    format_sample_table,
    format_table,
)
from brainvq.evaluation.two_sample import c2st_folds, c2st_scores
from brainvq.training.prior import train_prior
from brainvq.training.vqvae import train_vqvae

from ..conftest import fake_slice, tiny_config, write_slices
from ..priors.test_priors import ar_prior

pytestmark = pytest.mark.usefixtures("one_thread")


def _splits(subjects: list[str]) -> Splits:
    return Splits("keras", "x", subjects={"test": np.array(subjects, dtype=object)})


def test_folds_keep_brains_whole_or_say_they_cannot():
    groups, note = c2st_folds(_splits(["a", "a", "b", "b"]))
    assert groups == ["a", "a", "b", "b"] and "by brain (2 test brains)" in note
    groups, note = c2st_folds(_splits(["a", "", "b", "b"]))
    assert groups is None and "by slice" in note and "no subjects" in note
    groups, note = c2st_folds(_splits(["mni"] * 4))
    assert groups is None and "one brain" in note


def test_too_few_slices_are_skipped_and_off_means_absent():
    rng = np.random.default_rng(0)
    test = np.stack([fake_slice(rng, 32) for _ in range(6)])
    ev = EvalConfig()
    out = c2st_scores(test, test / 255.0, _splits([f"s{i}" for i in range(6)]), ev, paired=True)
    assert "skipped" in out and "6 images a side" in out["skipped"]
    ev.c2st = False
    assert c2st_scores(test, test / 255.0, _splits(["a"] * 6), ev) is None


def _keras(tmp_path):
    root = tmp_path / "keras"
    write_slices(root / "keras_png_slices_train", 16, 32, seed=1)
    write_slices(root / "keras_png_slices_validate", 4, 32, seed=2)
    write_slices(root / "keras_png_slices_test", 12, 32, seed=3)
    return root


def test_evaluate_reports_c2st_of_reconstructions(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    root = _keras(tmp_path)
    cfg = tiny_config(max_epochs=1)
    cfg.eval.c2st_folds = 2
    train_vqvae(str(root), str(tmp_path / "run"), cfg, progress=False)
    result = evaluate_vqvae(str(tmp_path / "run"))
    c = result["c2st"]
    assert c["n_per_side"] == 12 and "by brain (12 test brains)" in c["folds_by"]
    for pool in (1, 2):
        assert 0 <= c[f"pool{pool}"] <= 1 and len(c[f"pool{pool}_folds"]) == 2
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())["vqvae"]["c2st"]
    assert saved["pool2"] == c["pool2"] and saved["reading"].startswith("0.5 =")
    text = format_table(result)
    assert "C2ST full resolution" in text and "C2ST 2x2 averaged" in text
    assert "right" in text.splitlines()[-1] and "0.5 = a classifier cannot tell" in text


def test_evaluate_reports_c2st_of_a_priors_samples(tmp_path, monkeypatch):
    """Samples have no brain: they are dealt to folds at random while the real test slices keep
    theirs; the section, its table rows and the words line carry it, and eval.c2st=false drops it."""
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    root, run = _keras(tmp_path), str(tmp_path / "run")
    cfg = ar_prior("maskgit", steps=2)
    train_vqvae(str(root), run, cfg, progress=False)
    train_prior(run, cfg, data=str(root), progress=False)
    s = evaluate_samples(run, "maskgit", n=14, overrides=["eval.c2st_folds=3"])
    c = s["c2st"]
    # 14 samples against 12 test slices: 12 a side; 3 folds, each holding out whole real brains
    assert c["n_per_side"] == 12 and "by brain (12 test brains)" in c["folds_by"]
    assert len(c["pool1_folds"]) == 3 and len(c["pool2_folds"]) == 3
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())["samples-maskgit"]
    assert saved["c2st"]["pool1"] == c["pool1"]
    text = format_sample_table(s, "maskgit")
    assert "C2ST 2x2 averaged" in text and "3, 12 a side, folds by brain" in text
    assert text.splitlines()[-1].startswith("C2ST: a small CNN trained to tell these samples")
    off = evaluate_samples(run, "maskgit", n=14, overrides=["eval.c2st=false"])
    assert "c2st" not in off and "C2ST" not in format_sample_table(off, "maskgit")


def test_c2st_folds_setting_is_checked():
    cfg = Config()
    cfg.eval.c2st_folds = 1
    with pytest.raises(Exception, match="eval.c2st_folds"):
        cfg.validate()
