"""A run that knows when it is poor: one warning line per weak result, naming the setting that would
help, printed by `run` and `evaluate` and shown at the top of the report; the thresholds are in
--help."""

import pytest

from brainvq.config import Config
from brainvq.evaluation.evaluate import evaluate_run
from brainvq.pipeline import run as run_pipeline
from brainvq.reporting import verdict as v
from brainvq.reporting.report import write_report
from brainvq.training.prior import train_prior

from ..conftest import brainvq, tiny_config


@pytest.mark.parametrize(
    "section,values,needle,setting",
    [
        ("samples-maskgit", {"realism_ratio": 0.26}, "MaskGIT prior is weak", "--prior.max_steps"),
        (
            "samples-dcgan",
            {"diversity_gap": 0.2, "diversity_samples": 0.8, "diversity_real_test": 0.6},
            "too alike",
            "--temperature",
        ),
        ("samples-transformer", {"copies": 9, "n_samples": 64}, "copies", "--prior.max_steps"),
        ("vqvae", {"ssim": {"mean": 0.71}}, "VQ-VAE is weak", "--train.max_steps"),
        (
            "vqvae",
            {"codes_used": 7, "codebook_size": 512, "test_positions": 9000},
            "mostly dead",
            "--vqvae.codebook_size",
        ),
    ],
)
def test_each_weak_result_gives_one_line_naming_the_setting(section, values, needle, setting):
    found = v.findings({section: values})
    assert len(found) == 1 and needle in found[0].text and setting in found[0].text
    assert "\n" not in found[0].text
    good, text = v.verdict({section: values, "samples-x": {"realism_ratio": 1.0}})
    assert not good and text.startswith("Not good yet")


def test_a_small_test_split_does_not_make_the_codebook_look_dead():
    # 2 slices of 4x4 codes can show at most 32 of 512 codes
    assert (
        v.findings({"vqvae": {"codes_used": 20, "codebook_size": 512, "test_positions": 32}}) == []
    )


def _two_sample(n: int, pool4: float, std: float) -> dict:
    return {"pools": [2, 4], "pool2": pool4, "pool2_std": std, "pool4": pool4, "pool4_std": std,
            "n_per_side": n, "reference": "test", "folds_by": "folds by slice (one brain)"}  # fmt: skip


def test_the_prior_test_does_not_judge_from_a_handful_of_slices():
    """The demo's numbers (one template brain, 13 slices a side: 0.51 +- 0.33 against 0.16 +-
    0.18) are too few to judge: no warning, and the words say why; the same numbers from 64 a
    side warn."""
    from brainvq.evaluation.measures.prior_two_sample import prior_test_words

    plain = {"realism_ratio": 0.92, "diversity_samples": 0.6, "diversity_real_test": 0.6}
    for n, judged in ((13, False), (64, True)):
        s = {**plain, "n_samples": 64, "prior_c2st": _two_sample(n, 0.51, 0.33)}
        s["prior_c2st_reference"] = _two_sample(n, 0.16, 0.18)
        found = v.findings({"samples-maskgit": s})
        good, text = v.verdict({"samples-maskgit": s})
        words = prior_test_words(s)
        if judged:
            assert len(found) == 1 and "a classifier tells the MaskGIT" in found[0].short
            assert not good and "not close" in words
        else:
            assert found == [] and good and "13 slices a side, too few to judge" in text
            assert words.startswith("Prior test: 13 slices a side, too few to judge")


def test_a_five_step_prior_warns_and_the_report_opens_with_it(run_copy):
    run, root = run_copy
    cfg = tiny_config()
    cfg.prior.max_steps, cfg.prior.max_epochs, cfg.prior.max_minutes = 5, 100, 0.0
    cfg.prior.maskgit.dim, cfg.prior.maskgit.layers, cfg.prior.maskgit.heads = 16, 1, 2
    train_prior(str(run), cfg, "maskgit", progress=False)
    said = []
    result = evaluate_run(str(run), kind="maskgit", n=8, say=said.append)
    weak = [w for w in result["warnings"] if "prior is weak" in w]
    assert len(weak) == 1 and "it ended after 5 steps" in weak[0]
    assert f"warning: {weak[0]}" in said
    page = write_report(run).read_text()
    top = page.index("id='verdict'")
    assert "prior is weak" in page[top : page.index("<h2>The numbers</h2>")]


def test_thresholds_are_stated_in_help():
    for command in ("run", "evaluate"):
        out = brainvq(command, "--help").stdout.replace("\n", " ")
        out = " ".join(out.split())
        for value in (v.WEAK_REALISM, v.ALIKE_GAP, v.WEAK_SSIM):
            assert f"{value:g}" in out, (command, value)
        assert f"{v.DEAD_CODEBOOK:.0%}" in out and f"{v.COPY_SHARE:.0%}" in out


@pytest.mark.slow  # the demo itself: minutes of training
def test_the_demos_prior_is_not_weak_and_a_five_step_one_is(tmp_path):
    run = tmp_path / "demo"
    result = run_pipeline("default", run, Config.load("quick"), progress=False, say=print)
    assert not any("prior is weak" in w for w in result["evaluation"]["warnings"])
    # its one template brain gives the prior test 13 slices a side: too few to judge or warn
    assert not any("a classifier tells" in w for w in result["evaluation"]["warnings"])
    cfg = Config.load("quick")
    cfg.prior.max_steps = 5
    train_prior(str(run), cfg, "maskgit", fresh=True, progress=False)
    warnings = evaluate_run(str(run), kind="maskgit", n=64)["warnings"]
    assert any("MaskGIT prior is weak" in w for w in warnings)
