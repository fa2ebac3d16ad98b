"""A measure is one object registered in one place (brainvq.evaluation.measure): a toy measure
registered here, and nowhere else, is computed by `evaluate`, written to metrics.json, shown in
the plain-text table, the report and the verdict; a measure the config turns off is not run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainvq.errors import ConfigError
from brainvq.evaluation.evaluate import evaluate_run, format_sample_table
from brainvq.evaluation.measure import (
    Measure,
    ReportRow,
    Result,
    Row,
    register,
    registered,
    unregister,
)
from brainvq.reporting.report import write_report
from brainvq.training.prior import train_prior
from brainvq.training.vqvae import train_vqvae

from ..conftest import write_slices
from ..priors.test_priors import ar_prior

pytestmark = pytest.mark.usefixtures("one_thread")

KEY = "toy_brightness"


class Brightness(Measure):
    """The samples' mean brightness beside the real slices' (a toy)."""

    name, section, order = "toy_brightness", "samples", 35

    def enabled(self, ev) -> bool:
        return ev.n_samples != 9  # a setting of the config turns it off

    def compute(self, ctx):
        real = float(np.asarray(ctx.real).mean() / 255.0)
        return Result({KEY: float(ctx.images.mean()), "toy_brightness_real": real})

    def table_rows(self, v):
        return [Row(35, "toy brightness", f"{v[KEY]:.3f}")] if KEY in v else []

    def report_rows(self, v):
        if KEY not in v:
            return []
        real = f"{v['toy_brightness_real']:.2f}"
        return [ReportRow(35, "Toy brightness", f"{v[KEY]:.2f}", real, "A toy measure")]

    def warnings(self, v):
        return [f"toy: the samples' brightness is {v[KEY]:.3f}"] if KEY in v else []


@pytest.fixture
def toy():
    measure = register(Brightness())
    yield measure
    unregister(measure)


def _run(tmp_path):
    root = tmp_path / "keras"
    write_slices(root / "keras_png_slices_train", 12, 32, seed=1)
    write_slices(root / "keras_png_slices_validate", 4, 32, seed=2)
    write_slices(root / "keras_png_slices_test", 6, 32, seed=3)
    run, cfg = str(tmp_path / "run"), ar_prior("maskgit", steps=2)
    train_vqvae(str(root), run, cfg, progress=False)
    train_prior(run, cfg, data=str(root), progress=False)
    return run


def test_a_registered_measure_reaches_metrics_the_table_the_report_and_the_verdict(
    tmp_path, monkeypatch, toy
):
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    run = _run(tmp_path)
    assert toy in registered("samples")
    said = []
    result = evaluate_run(run, kind="maskgit", n=6, say=said.append, overrides=["eval.c2st=false"])
    s = json.loads((tmp_path / "run" / "metrics.json").read_text())["samples-maskgit"]
    keys = list(s)
    # its keys come after the measures ordered before it (likelihood: 30) and before MS-SSIM (40)
    assert keys.index(KEY) < keys.index("ms_ssim_diversity_samples")
    assert keys.index("samples_per_second") < keys.index(KEY)
    assert s[KEY] == pytest.approx(result["samples"]["maskgit"][KEY])
    table = format_sample_table(s, "maskgit").splitlines()
    labels = [line.split("  ")[0] for line in table]
    assert labels.index("toy brightness") == labels.index("samples/second") + 1
    assert "toy brightness" in "\n".join(said)
    assert "toy: the samples' brightness is" in "\n".join(result["warnings"])
    html = write_report(run).read_text()
    assert "Toy brightness" in html and "toy: the samples&#x27; brightness is" in html
    monkeypatch.setattr(Brightness, "compute", lambda self, ctx: pytest.fail("turned off"))
    off = evaluate_run(run, kind="maskgit", n=6, overrides=["eval.c2st=false", "eval.n_samples=9"])
    assert KEY not in off["samples"]["maskgit"] and "realism_ratio" in off["samples"]["maskgit"]


def test_unregistered_it_is_gone_and_a_measure_needs_a_section():
    measure = register(Brightness())
    unregister(measure)
    assert measure not in registered("samples")
    bad = Brightness()
    bad.section = "sample"
    with pytest.raises(ConfigError, match="section"):
        register(bad)
