"""Samples a user can share: manifest.csv beside the PNGs (file, prior, seed, temperature, level,
NN-SSIM, copy flag)."""

import csv
import json

from brainvq.evaluation.manifest import COLUMNS, describe_manifest, sample_with_manifest
from brainvq.training.prior import train_prior

from ..conftest import brainvq, tiny_config


def _prior(run):
    cfg = tiny_config()
    cfg.prior.max_steps, cfg.prior.max_epochs, cfg.prior.max_minutes = 3, 100, 0.0
    cfg.prior.maskgit.dim, cfg.prior.maskgit.layers, cfg.prior.maskgit.heads = 16, 1, 2
    train_prior(str(run), cfg, "maskgit", progress=False)


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_sample_writes_a_manifest_beside_the_pngs(run_copy, tmp_path):
    run, root = run_copy
    _prior(run)
    out = tmp_path / "shared"
    drawn = sample_with_manifest(str(run), "maskgit", n=5, seed=7, temperature=0.8, out=out)
    rows = _rows(out / "manifest.csv")
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 5
    for i, row in enumerate(rows):
        assert row["file"] == f"sample_{i:04d}.png" and (out / row["file"]).exists()
        assert (row["prior"], row["seed"], row["temperature"]) == ("maskgit", "7", "0.8")
        assert 0 < float(row["nn_ssim"]) <= 1 and row["copy"] in ("0", "1")
        assert row["level"] == "0"  # the nearest training slice is named case_NNN_slice_0
    assert "manifest -> " in describe_manifest(drawn) and "left empty" not in describe_manifest(
        drawn
    )
    # without the run's data at hand the scores are left empty, and the summary says so once
    (run / "data.json").write_text(json.dumps({"data": str(tmp_path / "moved away")}))
    drawn = sample_with_manifest(str(run), "maskgit", n=2, out=tmp_path / "bare")
    rows = _rows(tmp_path / "bare" / "manifest.csv")
    assert [(r["level"], r["nn_ssim"], r["copy"]) for r in rows] == [("", "", "")] * 2
    assert describe_manifest(drawn).count("left empty") == 1


def test_cli_sample_and_run_write_the_manifest(run_copy, tmp_path):
    run, _ = run_copy
    _prior(run)
    r = brainvq("sample", "--run", str(run), "-n", "3", "--out", str(tmp_path / "s"), "--quiet")
    assert f"manifest -> {tmp_path / 's' / 'manifest.csv'}" in r.stdout
    assert len(_rows(tmp_path / "s" / "manifest.csv")) == 3
