"""Conditioning fidelity (brainvq.evaluation.conditioning) and TSTR (brainvq.evaluation.utility,
`brainvq utility`): the fidelity reads high for samples that follow the condition asked and low
when the condition is dropped; the utility command never trains on a test brain, writes one row
per training set, and refuses what it cannot do in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brainvq.data.anatomy import anatomy
from brainvq.errors import RunError
from brainvq.evaluation.conditioning import fidelity, split_point
from brainvq.evaluation.measures.conditioning import Conditioning
from brainvq.evaluation.utility import Target, asked_values, outside, parse_target
from brainvq.priors.covariates import covariate_specs

from ..data.test_anatomy import SIZE, ellipse
from ..priors.test_conditioned_priors import data_with_table
from ..priors.test_priors import ar_prior

pytestmark = pytest.mark.usefixtures("one_thread")


def slice_with_ventricles(fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A 128x128 brain-like slice whose two ventricles cover about ``fraction`` of it."""
    brain = ellipse(SIZE / 2, SIZE / 2, 50, 42)
    img = np.where(brain, 0.45, 0.0) + np.where(ellipse(SIZE / 2, SIZE / 2, 42, 34), 0.35, 0.0)
    w = 5.0
    h = max(fraction * SIZE**2 / (2 * np.pi * w), 1.0)  # two ellipses of half-axes h, w
    for side in (-1, 1):
        img[ellipse(SIZE / 2, SIZE / 2 + side * 9, h, w)] = 0.1
    img = img + rng.normal(0, 0.02, img.shape) * brain
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def small_slice(group: int, rng: np.random.Generator) -> np.ndarray:
    """A 32x32 slice: a bright disc, with a dark centre for group 1."""
    yy, xx = np.mgrid[:32, :32] / 32 - 0.5
    img = (xx**2 + yy**2 < 0.16) * 0.8 - group * ((xx**2 + yy**2) < 0.03) * 0.6
    return np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1).astype(np.float32)


def real_sets(rng: np.random.Generator) -> dict:
    """real_covariates-like splits: 8 training and 4 test brains of 4 slices each, a group (0 or
    1 by brain) and a ventricle fraction per slice."""
    out = {}
    for split, brains in (("train", 8), ("test", 4)):
        group = np.repeat(np.arange(brains) % 2, 4).astype(np.float64)
        out[split] = {
            "images": np.stack([small_slice(int(g), rng) for g in group]),
            "subjects": np.array([f"{split}_{b}" for b in np.repeat(np.arange(brains), 4)]),
            "group": group,
            "ventricle_fraction": rng.uniform(0.01, 0.06, len(group)),
        }
    return out


def drawer(follows: bool):
    """A stand-in for a prior's draw: slices with the asked values, or (dropped) random ones."""

    def draw(asked: dict, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        ((name, values),) = asked.items()
        if name == "ventricle_fraction":
            got = values if follows else rng.uniform(0.01, 0.06, len(values))
            return np.stack([slice_with_ventricles(v, rng) / 255.0 for v in got])
        got = [("a", "b").index(v) for v in values] if follows else rng.integers(0, 2, len(values))
        return np.stack([small_slice(int(g), rng) for g in got])

    return draw


def test_fidelity_reads_high_when_samples_follow_and_low_when_the_condition_is_dropped():
    rng = np.random.default_rng(0)
    real = real_sets(rng)
    kinds = {
        "group": ("categorical", ("a", "b"), "subject"),
        "ventricle_fraction": ("continuous", (), "slice"),
    }
    specs = covariate_specs({n: real["train"][n] for n in kinds}, kinds)
    check = anatomy(slice_with_ventricles(0.04, rng))["ventricle_fraction"][0]
    assert abs(check - 0.04) < 0.006  # the drawer draws what the rule measures
    follows = fidelity(drawer(True), specs, real, samples=30, values=5, steps=60)
    dropped = fidelity(drawer(False), specs, real, samples=30, values=5, steps=60)
    v, g = follows["ventricle_fraction"], follows["group"]
    assert v["measure"] == "anatomy" and v["samples"] == 30 and len(v["values"]) == 5
    assert v["r"] > 0.95 and dropped["ventricle_fraction"]["r"] < 0.6
    assert g["measure"] == "classifier" and g["classes"] == ["a", "b"] and g["samples"] == 30
    assert g["test_accuracy"] > 0.9 and g["sample_accuracy"] > 0.9 and g["ratio"] > 0.9
    assert dropped["group"]["sample_accuracy"] < 0.75 and dropped["group"]["ratio"] < 0.8
    section = {"conditioning": {"covariates": follows}}
    rows = {r.label: r.value for r in Conditioning().table_rows(section)}  # evaluate's table
    assert rows["ventricle_fraction asked vs measured"].startswith(f"r {v['r']:.3f}")
    assert "100% of 30 samples labelled as asked" in rows["group classes (a, b)"]
    html = Conditioning().report_rows(section)  # report.html: measure, samples, real, meaning
    assert [r.label for r in html] == [
        "Follows the group asked",
        "Follows the ventricle_fraction asked",
    ]


def test_a_continuous_table_covariate_is_cut_where_cdr_reads_0_against_1_and_more():
    assert split_point(np.array([0, 0, 1, 1, 1, 2, np.nan])) == 1.0
    assert split_point(np.array([0, 0, 0, 0, 1, 2.0])) == 1.0  # median 0: cut above the lowest
    assert split_point(np.array([60, 70, 80, 90.0])) == 75.0
    cdr = Target("cdr", "classify", ["cdr<1", "cdr>=1"], threshold=1.0)
    assert cdr.labels(np.array([0, 1, 2, np.nan])).tolist()[:3] == [0, 1, 1]
    asked = asked_values(cdr, np.array([0, 0, 0, 0, 0, 0, 1, 2.0]), 10, seed=0)
    assert (asked == 0).sum() == 5 and (asked >= 1).sum() == 5  # the same count per class


def test_training_slices_of_a_test_brain_are_dropped():
    keep = outside(np.array(["s1", "s2", "s3", "", "s2"]), np.array(["s2", "s9"]))
    assert keep.tolist() == [True, False, True, True, False]


def test_targets_are_checked_in_one_line():
    kinds = {
        "cdr": ("continuous", (), "subject"),
        "diagnosis": ("categorical", ("ad", "cn"), "subject"),
    }
    specs = covariate_specs({"cdr": np.array([0, 1.0]), "diagnosis": np.array([0, 1.0])}, kinds)
    assert parse_target(None, specs, "P").name == "cdr"
    assert parse_target(" cdr >= 1", specs, "P").classes == ["cdr<1", "cdr>=1"]
    assert parse_target("cdr", specs, "P").task == "regress"
    assert parse_target("diagnosis", specs, "P").classes == ["ad", "cn"]
    for text, specs_, says in [
        ("age", specs, "P was trained on conditions cdr, diagnosis"),
        ("cdr>1", specs, "write NAME or NAME>=NUMBER"),
        ("cdr>=x", specs, "write NAME or NAME>=NUMBER"),
        ("diagnosis>=1", specs, "diagnosis is categorical"),
        ("cdr", [], "trained without conditions"),
    ]:
        with pytest.raises(RunError, match=says) as e:
            parse_target(text, specs_, "P")
        assert "\n" not in str(e.value)


# -- through a run folder and the command line ------------------------------------------------------
def conditioned_run(run_copy, tmp_path, conditions=("group", "ventricle_fraction")):
    """The tiny run with a 3-step maskgit prior conditioned on ``conditions``, and its data."""
    from brainvq.training.prior import train_prior

    run_path, root = run_copy
    data = data_with_table(root, tmp_path)
    cfg = ar_prior("maskgit", steps=3)
    cfg.prior.conditions = list(conditions)
    train_prior(str(run_path), cfg.validate(), data=str(data), progress=False)
    return run_path, data


def test_utility_trains_on_each_set_and_never_on_a_test_brain(run_copy, tmp_path, capsys):
    from brainvq.cli import main

    run_path, data = conditioned_run(run_copy, tmp_path)
    test_slice = sorted((data / "keras_png_slices_test").glob("*.png"))[0]
    shutil.copy(
        test_slice, data / "keras_png_slices_train" / test_slice.name.replace("slice_0", "slice_1")
    )
    args = ["utility", "--run", str(run_path), "--data", str(data), "--quiet", "-n", "6"]
    rc = main([*args, "--target", "group", "--steps", "4", "--seeds", "2"])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "target group (classify)" in out and "synthetic" in out and "both" in out
    res = json.loads((run_path / "utility.json").read_text())
    assert res["dropped_test_brain_slices"] == 1  # the test brain's slice in train is not used
    assert res["n_real_train"] == 24 and res["n_test"] == 6 and res["test_brains"] == 6
    assert set(res["results"]) == {"synthetic", "real", "both"}
    assert [res["results"][k]["n_train"] for k in ("synthetic", "real", "both")] == [6, 24, 30]
    for r in res["results"].values():
        assert len(r["per_seed"]) == 2 and 0 <= r["accuracy"] <= 1 and "accuracy_std" in r
    rc = main([*args, "--target", "ventricle_fraction", "--steps", "3", "--seeds", "1"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((run_path / "utility.json").read_text())
    assert res["task"] == "regress" and {"r", "mae"} <= set(res["results"]["real"])


def test_utility_refuses_what_it_cannot_do_in_one_line(run_copy, tmp_path, capsys):
    from brainvq.cli import main

    run_path, data = conditioned_run(run_copy, tmp_path, ("group",))
    args = ["utility", "--run", str(run_path), "--data", str(data), "--quiet", "-n", "4"]
    for bad, says in [
        (["--target", "age"], "trained on conditions group"),
        (["--target", "group>=1"], "group is categorical"),
        (["--steps", "0"], "steps >= 1"),
        (["--kind", "transformer"], "prior-transformer"),
    ]:
        assert main([*args, *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err


def test_evaluate_reports_conditioning_fidelity_only_for_a_conditioned_prior(run_copy, tmp_path):
    from brainvq.evaluation.evaluate import evaluate_samples, format_sample_table

    run_path, data = conditioned_run(run_copy, tmp_path)
    few = ["eval.c2st=false", "eval.condition_samples=4", "eval.condition_values=2"]
    s = evaluate_samples(
        str(run_path), "maskgit", str(data), n=4, overrides=[*few, "eval.condition_steps=3"]
    )
    cond = s["conditioning"]["covariates"]
    assert cond["ventricle_fraction"]["measure"] == "anatomy"
    assert cond["ventricle_fraction"]["samples"] == 4
    assert cond["group"]["measure"] == "classifier" and cond["group"]["classes"] == ["a", "b"]
    table = format_sample_table(s, "maskgit")
    assert "ventricle_fraction asked vs measured" in table and "group classes (a, b)" in table
    metrics = json.loads((run_path / "metrics.json").read_text())
    assert "conditioning" in metrics["samples-maskgit"]
    from brainvq.training.prior import train_prior

    train_prior(str(run_path), ar_prior("transformer"), data=str(data), progress=False)
    plain = evaluate_samples(str(run_path), "transformer", str(data), n=4, overrides=few)
    assert "conditioning" not in plain and Conditioning().table_rows(plain) == []
