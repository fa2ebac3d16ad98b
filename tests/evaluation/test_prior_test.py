"""The prior's two-sample test (brainvq.evaluation.prior_test): near its reference for a "prior"
that draws real code maps, near 1.0 for code maps with neighbouring codes shuffled, decoded by the
same decoder; its reference cached in the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from brainvq.codes import code_maps
from brainvq.evaluation.prior_test import cache_dir, prior_two_sample, reconstructions
from brainvq.evaluation.two_sample import pooled_c2st
from brainvq.runs import load_run
from brainvq.training.vqvae import train_vqvae

from ..conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 64  # pool 4 needs 64 px (16 px a side left after pooling)


def brain_slice(rng: np.random.Generator, z: int, nz: int, a: float, b: float) -> np.ndarray:
    """One fake axial slice: a brain-ish ellipse whose size follows the level z of nz."""
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE - 0.5
    s = 0.6 + 0.4 * np.sin(np.pi * (z + 1) / (nz + 1))
    outer = (xx / (a * s)) ** 2 + (yy / (b * s)) ** 2 < 1
    inner = (xx / (a * s * 0.4)) ** 2 + (yy / (b * s * 0.5)) ** 2 < 1
    img = outer * 190 - inner * 80 + rng.normal(0, 8, (SIZE, SIZE)) * outer
    return np.clip(img, 0, 255).astype(np.uint8)


def write_brains(folder, brains: int, first: int, nz: int = 6) -> None:
    """``brains`` fake brains of nz slices each, named case_NNN_slice_Z like the OASIS PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(first)
    for b in range(brains):
        a, bb = rng.uniform(0.3, 0.42, 2)
        for z in range(nz):
            img = brain_slice(rng, z, nz, a, bb)
            Image.fromarray(img).save(folder / f"case_{first + b:03d}_slice_{z}.nii.png")


@pytest.fixture(scope="module")
def brain_run(tmp_path_factory):
    """A tiny VQ-VAE (64 px, 16x16 code maps) on 8/6/6 fake brains of 6 slices each."""
    base = tmp_path_factory.mktemp("brains")
    root = base / "keras"
    write_brains(root / "keras_png_slices_train", 8, 100)
    write_brains(root / "keras_png_slices_validate", 6, 200)
    write_brains(root / "keras_png_slices_test", 6, 300)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINVQ_CACHE", str(base / "cache"))
        cfg = tiny_config(image_size=SIZE, max_epochs=2)
        train_vqvae(str(root), str(base / "run"), cfg, progress=False)
    return base / "run", root


def shuffle_blocks(codes: torch.Tensor, block: int, seed: int = 0) -> torch.Tensor:
    """Code maps (N, h, w) with the positions inside each block x block square permuted."""
    n, h, w = codes.shape
    g = torch.Generator().manual_seed(seed)
    c = codes.view(n, h // block, block, w // block, block).permute(0, 1, 3, 2, 4)
    c = c.reshape(n, h // block, w // block, block * block)
    c = torch.gather(c, -1, torch.argsort(torch.rand(c.shape, generator=g), -1))
    c = c.view(n, h // block, w // block, block, block).permute(0, 1, 3, 2, 4)
    return c.reshape(n, h, w)


def test_shuffle_blocks_keeps_each_blocks_codes():
    codes = torch.arange(2 * 4 * 4).view(2, 4, 4)
    s = shuffle_blocks(codes, 2)
    assert not torch.equal(s, codes)
    for i in range(0, 4, 2):
        for j in range(0, 4, 2):
            a, b = codes[:, i : i + 2, j : j + 2], s[:, i : i + 2, j : j + 2]
            assert torch.equal(a.flatten(1).sort(1).values, b.flatten(1).sort(1).values)


def test_real_code_maps_read_near_the_reference_and_shuffled_ones_near_one(brain_run, monkeypatch):
    """A "prior" that draws the test brains' own code maps scores against the validation brains'
    reconstructions about what the reference does; the same maps with the codes of each 2x2
    square permuted are told apart almost always."""
    from brainvq.reporting.verdict import findings, prior_test_close, verdict

    run_path, root = brain_run
    monkeypatch.setenv("BRAINVQ_CACHE", str(run_path.parent / "cache"))
    run = load_run(run_path)
    real = reconstructions(run, "test")
    out = prior_two_sample(run, real, reference="validate", folds=3)
    test, ref = out["prior_c2st"], out["prior_c2st_reference"]
    assert test["pools"] == [1, 2, 4] and ref["pools"] == [1, 2, 4]
    assert test["n_per_side"] == ref["n_per_side"] == 36
    assert "by brain (6 validate brains)" in test["folds_by"]
    assert "by brain (6 test brains)" in ref["folds_by"]
    assert prior_test_close(test, ref), (test, ref)
    codes = torch.from_numpy(code_maps(run, str(root))["test"])
    shuffled = run.vqvae.decode(shuffle_blocks(codes, 2), 64)[:, 0].clamp(0, 1).numpy()
    bad = prior_two_sample(run, shuffled, reference="validate", folds=3)["prior_c2st"]
    assert min(bad["pool1"], bad["pool2"], bad["pool4"]) > 0.9, bad
    assert not prior_test_close(bad, ref)
    # the verdict: "look like real brains" for the first, a plain-words warning for the second
    plain = {"realism_ratio": 1.0, "diversity_samples": 0.5, "diversity_real_test": 0.5}
    plain["n_samples"] = 36
    good, text = verdict({"samples-maskgit": {**plain, "prior_c2st": test, **_ref(ref)}})
    assert good and "look like real brains" in text
    good, text = verdict({"samples-maskgit": {**plain, "prior_c2st": bad, **_ref(ref)}})
    assert not good and "Looks good" not in text and "look like real brains" not in text
    assert "a classifier tells the MaskGIT prior's samples from real brains" in text
    (line,) = [f.text for f in findings({"samples-maskgit": {"prior_c2st": bad, **_ref(ref)}})]
    assert "reconstructions of real validate brains" in line and "at pool 4" in line


def _ref(ref: dict) -> dict:
    return {"prior_c2st_reference": ref}


def test_reference_is_cached_in_the_run(brain_run, monkeypatch):
    run_path, _ = brain_run
    monkeypatch.setenv("BRAINVQ_CACHE", str(run_path.parent / "cache"))
    run = load_run(run_path)
    real = reconstructions(run, "validate")
    first = prior_two_sample(run, real[:20], reference="test", pools=(2,), folds=2)
    saved = json.loads((cache_dir(run) / "prior_c2st_reference.json").read_text())
    assert any("|n=20|folds=2|" in key for key in saved)
    assert list(cache_dir(run).glob("recons-vqvae-*-*-test.npy"))
    again = prior_two_sample(run, real[:20], reference="test", pools=(2,), folds=2)
    assert again["prior_c2st_reference"] == first["prior_c2st_reference"]
    assert first["prior_c2st"]["reference"] == "test"


def test_too_few_or_too_small_is_skipped_with_the_reason():
    rng = np.random.default_rng(0)
    small = rng.random((12, 32, 32)).astype(np.float32)
    assert pooled_c2st(small, small, pools=(4,))["skipped"].startswith("32px images")
    assert "5 images a side" in pooled_c2st(small[:5], small, pools=(1,))["skipped"]


def test_evaluate_reports_the_prior_test_ms_ssim_and_the_figure(brain_run, tmp_path, monkeypatch):
    """evaluate's samples section holds the prior test beside its reference and MS-SSIM
    diversity; the table prints them, the report shows samples beside reconstructions; with
    eval.c2st=false no classifier test runs."""
    import shutil

    from brainvq.evaluation.evaluate import evaluate_samples, format_sample_table
    from brainvq.reporting.report import write_report
    from brainvq.training.prior import train_prior

    from ..priors.test_priors import ar_prior

    run_path, root = brain_run
    run = tmp_path / "run"
    shutil.copytree(run_path, run)
    monkeypatch.setenv("BRAINVQ_CACHE", str(run_path.parent / "cache"))
    cfg = ar_prior("maskgit", steps=2)
    cfg.data.image_size, cfg.prior.levels = SIZE, "off"
    train_prior(str(run), cfg, data=str(root), progress=False)
    s = evaluate_samples(str(run), "maskgit", n=20, overrides=["eval.c2st_folds=2"])
    assert s["prior_c2st"]["pools"] == [1, 2, 4] and s["prior_c2st"]["n_per_side"] == 20
    assert s["prior_c2st_reference"]["n_per_side"] == 20 and s["prior_c2st"]["reference"] == "test"
    assert 0 < s["ms_ssim_diversity_samples"] <= 1 and 0 < s["ms_ssim_diversity_real_test"] < 1
    assert s["ms_ssim_scales"].startswith("3 scales (64, 32, 16 px)")
    text = format_sample_table(s, "maskgit")
    assert "prior test pool 4" in text and "(reference " in text and "MS-SSIM diversity" in text
    assert "Prior test: a small CNN tells these samples" in text
    assert (run / "figures" / "maskgit_beside_recons.png").exists()
    page = write_report(run).read_text()
    assert "reconstructions of real brains at the same axial levels" in page
    assert "Told from real brains (4x4 averaged)" in page
    off = evaluate_samples(str(run), "maskgit", n=20, overrides=["eval.c2st=false"])
    assert "prior_c2st" not in off and "c2st" not in off and "ms_ssim_diversity_samples" in off
