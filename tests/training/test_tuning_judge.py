"""Decoder tuning is kept only where it does what it exists for (brainvq.training.tuning_judge),
a dropped tuning never decodes samples, and a tuning whose minutes cannot fit its steps is skipped
without a result."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from brainvq.config import Config, TuneConfig
from brainvq.pipeline import tune_stage
from brainvq.priors import load_prior
from brainvq.priors.tuned_decoder import tuned_vqvae, tuning_refused
from brainvq.runs import load_run
from brainvq.sampling import sample_images
from brainvq.training import decoder as decoder_tuning
from brainvq.training import precision
from brainvq.training.budget import read_finished
from brainvq.training.tuning_judge import MAX_SSIM_DROP, sample_c2st, verdict

from ..conftest import fake_slice
from .test_budget import SlowClock
from .test_decoder_tuning import _maskgit_run

pytestmark = pytest.mark.usefixtures("one_thread")

SSIM = {"val_ssim_vqvae": 0.90, "val_ssim_tuned": 0.90}


@pytest.fixture(autouse=True)
def fp32(monkeypatch):
    """Decoder tuning in fp32 without a precision measurement (these tests are not about it)."""
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)


@pytest.mark.parametrize(
    "judged,alike,kept,fault",
    [
        ({**SSIM, "c2st_vqvae": 0.80, "c2st_tuned": 0.70}, (0.6, 0.6), True, ""),
        ({**SSIM, "c2st_vqvae": 0.80, "c2st_tuned": 0.80}, (0.6, 0.6), False, "no harder"),
        ({**SSIM, "c2st_vqvae": 0.80, "c2st_tuned": 0.85}, (0.6, 0.6), False, "C2ST 0.850"),
        ({"val_ssim_vqvae": 0.9, "val_ssim_tuned": 0.894, "c2st_vqvae": 0.8, "c2st_tuned": 0.7},
         (0.6, 0.6), False, "lose 0.0060 SSIM"),
        ({"val_ssim_vqvae": 0.9, "val_ssim_tuned": 0.896, "c2st_vqvae": 0.8, "c2st_tuned": 0.7},
         (0.6, 0.6), True, ""),
        ({**SSIM, "c2st_vqvae": 0.80, "c2st_tuned": 0.70}, (0.6, 0.9), False, "more alike"),
        ({**SSIM, "c2st_skipped": "4 slices"}, (0.6, 0.6), True, ""),
    ],
)  # fmt: skip
def test_verdict_keeps_a_tuning_only_where_every_check_holds(judged, alike, kept, fault):
    assert MAX_SSIM_DROP == 0.005
    ok, why = verdict(judged, alike, max_rise=0.05)
    assert ok is kept and fault in why and bool(why) is not kept


def test_a_worse_tuning_is_dropped_and_never_decodes_samples(run_copy, monkeypatch):
    run_path, _ = _maskgit_run(run_copy)
    run = load_run(run_path)
    prior = load_prior(run, "maskgit")
    monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
    tune = TuneConfig(max_minutes=0.0, max_steps=3)
    res = decoder_tuning.tune_decoder(str(run_path), "maskgit", tune, progress=False)
    # the tiny run's 4 validation slices are too few for the two-sample test: said, not hidden
    assert res["kept"] and "4 slices" in res["c2st_skipped"]
    assert sample_images(run, prior, 2)["decoder"] == "tuned"

    def worse(prior, vqvae, tuned, split, folds, seed, progress=None):
        return {**SSIM, "c2st_vqvae": 0.70, "c2st_tuned": 0.90}  # its samples easier to tell

    monkeypatch.setattr(decoder_tuning, "judge_decoders", worse)
    cfg = Config()
    cfg.tune = TuneConfig(max_minutes=0.0, max_steps=3)
    said = []
    res = tune_stage(run_path, "maskgit", cfg, fresh=True, progress=False, say=said.append)
    assert not res["kept"] and len(said) == 1
    assert said[0].startswith("decoder tuning to the maskgit prior dropped: its samples are no ")
    assert "C2ST 0.900 vs 0.700" in said[0]
    # the earlier, kept tuning to this prior is gone too: samples come from the VQ-VAE's decoder
    assert not (run_path / "decoder-maskgit.safetensors").exists()
    assert tuning_refused(run.dir, "maskgit") and tuned_vqvae(run, "maskgit") is None
    assert sample_images(run, prior, 2)["decoder"] == "vqvae"
    # and `run` does not spend its budget on it again
    assert tune_stage(run_path, "maskgit", cfg, progress=False, say=said.append) is None
    assert "was not kept before" in said[-1]


def test_a_tuning_whose_minutes_cannot_fit_its_steps_is_skipped_without_a_result(
    run_copy, monkeypatch, capsys
):
    run_path, _ = _maskgit_run(run_copy)
    monkeypatch.setattr(time, "monotonic", SlowClock(30.0))  # each clock reading 30 s later
    cfg = Config()
    cfg.tune = TuneConfig(max_minutes=1.0, max_steps=0)
    said = []
    assert tune_stage(run_path, "maskgit", cfg, progress=True, say=said.append) is None
    assert len(said) == 1 and said[0].startswith("decoder tuning skipped: decoder-maskgit: ")
    assert "tune.max_minutes = 1 fits about" in said[0] and "set tune.max_steps" in said[0]
    run = load_run(run_path)
    assert read_finished(run.dir, "decoder-maskgit") is None
    assert not (run_path / "decoder-maskgit.safetensors").exists()
    assert not tuning_refused(run.dir, "maskgit")  # not judged: tried again with a budget
    err = capsys.readouterr().err
    assert "decoder-maskgit: preparing 96 maps took" in err  # 24 maps, 3 slipped copies
    assert "(not counted in tune.max_minutes)" in err


def test_sample_c2st_tells_a_decoder_that_draws_noise_from_one_that_draws_real_slices():
    rng = np.random.default_rng(0)
    real = np.stack([fake_slice(rng, 32) for _ in range(24)]).astype(np.float32) / 255.0
    groups = [f"brain{i % 4}" for i in range(24)]  # four brains, six slices each

    class Prior:
        sampling = (1.0, 0)

        def sample(self, n, seed, temperature, top_k):
            return torch.arange(n)[:, None, None].expand(n, 4, 4)  # map i -> image i

    class Decoder:
        def __init__(self, images):
            self.images = torch.from_numpy(images)

        def decode(self, codes):
            return self.images[codes[:, 0, 0]][:, None]

    alike = np.stack([fake_slice(rng, 32) for _ in range(24)]).astype(np.float32) / 255.0
    noise = rng.uniform(0, 1, real.shape).astype(np.float32)
    scores = sample_c2st(Prior(), [Decoder(alike), Decoder(noise)], real, groups, 2, seed=0)
    assert scores[1] > 0.9 and scores[0] < scores[1]  # the classifier trains (not in no_grad)
    few = sample_c2st(Prior(), [Decoder(alike)], real[:4], groups[:4], 2, seed=0)
    assert few == "the validation split has 4 slices: too few for a two-sample test"


def test_a_tuning_stopped_while_judging_is_judged_when_asked_again(run_copy, monkeypatch):
    run_path, _ = _maskgit_run(run_copy)
    monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
    real_judge = decoder_tuning.judge_decoders

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(decoder_tuning, "judge_decoders", stopped)
    tune = TuneConfig(max_minutes=0.0, max_steps=3)
    with pytest.raises(KeyboardInterrupt):
        decoder_tuning.tune_decoder(str(run_path), "maskgit", tune, progress=False)
    run = load_run(run_path)
    assert read_finished(run.dir, "decoder-maskgit")["steps"] == 3  # trained, never judged
    assert not tuning_refused(run.dir, "maskgit")
    assert not (run_path / "decoder-maskgit.safetensors").exists()
    monkeypatch.setattr(decoder_tuning, "judge_decoders", real_judge)
    res = decoder_tuning.tune_decoder(str(run_path), "maskgit", tune, progress=False)
    assert res["status"] == "judged" and res["steps"] == 3 and res["kept"]
    assert "judged a finished tuning" in decoder_tuning.describe(res)
    assert (run_path / "decoder-maskgit.safetensors").exists()
    again = decoder_tuning.tune_decoder(str(run_path), "maskgit", tune, progress=False)
    assert again["status"] == "reused"
