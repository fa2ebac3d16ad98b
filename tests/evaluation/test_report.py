"""report.html: self-contained, every figure embedded, and it renders in a real browser."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from brainvq.config import Config
from brainvq.io import atomic_write_text
from brainvq.reporting.figures import code_map_figure, codebook_figure, recon_figure
from brainvq.reporting.report import FIGURES, write_report
from brainvq.runs import RunDir
from brainvq.sampling import image_grid

from ..conftest import HANG_GUARD_S

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
        "vqvae": {
            "n_test": 8,
            "image_size": 32,
            "ssim": {"mean": 0.9, "std": 0.01},
            "psnr": {"mean": 30.0},
            "codes_used": 50,
            "codebook_usage": 50 / 64,
            "codebook_size": 64,
        },
        "samples-dcgan": {
            "n_samples": 64,
            "nn_ssim_mean": 0.7,
            "real_test_nn_ssim_mean": 0.72,
            "realism_ratio": 0.97,
            "diversity_samples": 0.6,
            "diversity_real_test": 0.61,
            "copies": 0,
            "seed": 0,
        },
    }
    atomic_write_text(run.metrics, json.dumps(metrics))
    rng = np.random.default_rng(0)
    imgs = rng.random((8, 32, 32))
    recon_figure(imgs, imgs * 0.9, rng.random(8), run.figures / "reconstructions.png")
    codebook_figure(rng.integers(0, 50, 64), run.figures / "codebook_usage.png", "usage")
    code_map_figure(rng.integers(0, 64, (8, 8)), imgs[0], run.figures / "dcgan_code_map.png", 64)
    for name in ("dcgan_samples.png", "dcgan_nearest_pairs.png", "vqvae_curves.png"):
        image_grid(imgs, run.figures / name)
    for name in ("dcgan_sample_grid.png", "real_test_slices.png"):
        image_grid(rng.random((16, 128, 128)), run.figures / name, ncol=4)
    return run


TOP = {"dcgan_sample_grid.png", "real_test_slices.png"}  # shown at the top, not in a section


def test_report_is_self_contained(run_folder):
    out = write_report(run_folder.path)
    page = out.read_text()
    n_figs = len(list(run_folder.figures.glob("*.png")))
    assert page.count('src="data:image/png;base64,') == n_figs == 8
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)  # nothing fetched from outside
    assert "nn_ssim_mean" in page and "codebook_size" in page  # raw keys (folded) and config
    for section in ("Reconstructions", "Samples", "Nearest-neighbour pairs", "Codebook usage"):
        assert f"<h2>{section}</h2>" in page
    assert {f for f, _, _ in FIGURES} | TOP >= {p.name for p in run_folder.figures.glob("*.png")}


def test_report_opens_on_the_verdict_and_the_pictures_then_plain_numbers(run_folder):
    page = write_report(run_folder.path).read_text()
    order = [
        "id='verdict'",
        'id="samples-dcgan"',
        'id="real-dcgan"',
        "<h2>The numbers</h2>",
        "<h2>Training curves</h2>",
    ]
    at = [page.index(mark) for mark in order]
    assert at == sorted(at)
    assert "Looks good" in page[at[0] : at[1]]
    numbers = page[at[3] : at[4]]
    # plain labels, the real slices' value beside each, one line on what it means
    assert "Look like brains (realism ratio)" in numbers and "0.97" in numbers
    assert "Variety (mean pairwise SSIM)" in numbers and "0.61" in numbers
    assert "1 = as close as real brains" in numbers and "Reconstruction quality" in numbers


def _chromium(page, profile, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
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
            "--window-size=1280,800",
            *flags,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_report_renders_its_images_in_chromium(run_folder, tmp_path):
    out = write_report(run_folder.path)
    dom = _chromium(out, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom").stdout
    m = re.search(r'data-images-ok="(\d+)/(\d+)"', dom)
    assert m, dom[:500]
    assert m.group(1) == m.group(2) == "8"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_reports_first_screen_holds_the_verdict_and_the_sample_grid(run_folder, tmp_path):
    out = write_report(run_folder.path)
    shot = tmp_path / "first-screen.png"
    _chromium(out, tmp_path / "p1", f"--screenshot={shot}", "--hide-scrollbars")
    assert Image.open(shot).size == (1280, 800)  # what a reader sees before scrolling
    dom = _chromium(out, tmp_path / "p2", "--virtual-time-budget=5000", "--dump-dom").stdout
    seen = re.search(r'data-first-screen="([^"]*)"', dom).group(1).split()
    assert {"verdict", "samples-dcgan", "real-dcgan"} <= set(seen), seen
