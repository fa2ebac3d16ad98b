"""report.html: self-contained, every figure embedded, and it renders in a real browser."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from brainvq.config import Config
from brainvq.evaluation.figures import code_map_figure, codebook_figure, recon_figure
from brainvq.evaluation.report import FIGURES, write_report
from brainvq.io import atomic_write_text
from brainvq.runs import RunDir
from brainvq.sampling import image_grid

from .conftest import HANG_GUARD_S

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)


@pytest.fixture
def run_folder(tmp_path):
    """A run folder with a config, metrics and one of each figure, made from random images."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    Config().save(run.config)
    metrics = {
        "vqvae": {"ssim": {"mean": 0.9, "std": 0.01}, "codes_used": 500},
        "samples-dcgan": {"nn_ssim_mean": 0.7, "copies": 0},
    }
    atomic_write_text(run.metrics, json.dumps(metrics))
    rng = np.random.default_rng(0)
    imgs = rng.random((8, 32, 32))
    recon_figure(imgs, imgs * 0.9, rng.random(8), run.figures / "reconstructions.png")
    codebook_figure(rng.integers(0, 50, 64), run.figures / "codebook_usage.png", "usage")
    code_map_figure(rng.integers(0, 64, (8, 8)), imgs[0], run.figures / "dcgan_code_map.png", 64)
    for name in ("dcgan_samples.png", "dcgan_nearest_pairs.png", "vqvae_curves.png"):
        image_grid(imgs, run.figures / name)
    return run


def test_report_is_self_contained(run_folder):
    out = write_report(run_folder.path)
    page = out.read_text()
    n_figs = len(list(run_folder.figures.glob("*.png")))
    assert page.count('src="data:image/png;base64,') == n_figs == 6
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)  # nothing fetched from outside
    assert "nn_ssim_mean" in page and "codebook_size" in page  # metrics and config are shown
    for section in ("Reconstructions", "Samples", "Nearest-neighbour pairs", "Codebook usage"):
        assert f"<h2>{section}</h2>" in page
    assert {f for f, _, _ in FIGURES} >= {p.name for p in run_folder.figures.glob("*.png")}


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_report_renders_its_images_in_chromium(run_folder, tmp_path):
    out = write_report(run_folder.path)
    profile = tmp_path / "chrome-profile"
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    ).stdout
    m = re.search(r'data-images-ok="(\d+)/(\d+)"', dom)
    assert m, dom[:500]
    assert m.group(1) == m.group(2) == "6"
