"""Decoder tuning: MaskGIT's redraw, the tuning stage, the tuned decoder file, and who decodes
samples with it."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from brainvq.config import Config, TuneConfig
from brainvq.data import load_splits
from brainvq.errors import Interrupted, RunError
from brainvq.io import file_digest
from brainvq.nn.maskgit import MaskedCodeTransformer
from brainvq.pipeline import tune_stage
from brainvq.priors import load_prior, prior_path
from brainvq.priors.tuned_decoder import tuned_vqvae, tuning_refused
from brainvq.runs import load_run
from brainvq.sampling import sample_images
from brainvq.training import decoder as decoder_tuning
from brainvq.training.decoder import (
    decode_loss,
    describe,
    sample_alikeness,
    slip_codes,
    tune_decoder,
)
from brainvq.training.prior import train_prior

from ..conftest import TEST_PRECISION, brainvq, tiny
from ..priors.test_priors import K, ar_prior


def budget(steps: int, **values) -> TuneConfig:
    """A tuning of `steps` steps, no time cap."""
    return TuneConfig(max_minutes=0.0, max_steps=steps, **values)


def test_redraw_draws_the_hidden_codes_and_keeps_the_rest():
    torch.manual_seed(0)
    net = MaskedCodeTransformer(K, 36, dim=32, layers=2, heads=4, kv_heads=2).eval()
    codes = torch.randint(0, K - 1, (3, 6, 6))  # never K - 1
    hidden = torch.rand(3, 6, 6) < 0.4
    orig = codes.clone()
    seen = []

    def pick(logits):
        seen.append(logits.shape)
        return torch.full((len(logits),), K - 1)

    out = net.redraw(codes, hidden, pick)
    assert seen == [(int(hidden.sum()), K)]  # one pass, one draw per hidden code
    assert torch.equal(out[~hidden], codes[~hidden])
    assert (out[hidden] == K - 1).all()
    assert torch.equal(codes, orig)  # the input is untouched


def _maskgit_run(run_copy):
    run_path, root = run_copy
    train_prior(str(run_path), ar_prior("maskgit", steps=3), data=str(root), progress=False)
    return run_path, root


def test_tuned_decoder_learns_the_slips_and_decodes_that_priors_samples(run_copy):
    run_path, root = _maskgit_run(run_copy)
    run = load_run(run_path)
    prior = load_prior(run, "maskgit")
    before = sample_images(run, prior, 4, seed=3)
    assert before["decoder"] == "vqvae" and tuned_vqvae(run, "maskgit") is None

    res = tune_decoder(str(run_path), "maskgit", budget(60, lr=3e-3, seed=0), progress=False)
    assert res["steps"] == 60 and 0 < res["slipped_share"] < 0.5
    assert 0 < res["test_ssim_tuned"] <= 1 and 0 < res["test_ssim_vqvae"] <= 1
    assert res["kept"] and res["samples_alike_tuned"] <= res["samples_alike_vqvae"] + 0.05
    tuned = tuned_vqvae(run, "maskgit")
    assert tuned is not None
    # only the decoder changed: the encoder and codebook, so every code map, stay as they were
    for name, v in run.vqvae.state_dict().items():
        same = torch.equal(v, tuned.state_dict()[name])
        assert same != name.startswith("decoder."), name

    # on slips it has not seen (another seed), the tuned decoder is closer to the real slices
    from brainvq.codes import code_maps

    real = torch.from_numpy(np.asarray(code_maps(run, str(root))["train"])).long()
    x = load_splits(root, run.config.data, progress=False)["train"]
    x = torch.from_numpy(np.asarray(x, dtype=np.float32) / 255.0)[:, None]
    slipped = slip_codes(prior, real, 0.5, torch.Generator().manual_seed(99))
    w = run.config.train.ssim_loss_weight
    with torch.no_grad():
        assert decode_loss(tuned, slipped, x, w) < decode_loss(run.vqvae, slipped, x, w)

    # samples of that prior are decoded with it (same codes as before: sampling is unchanged)
    after = sample_images(run, prior, 4, seed=3)
    assert after["decoder"] == "tuned" and torch.equal(after["codes"], before["codes"])
    np.testing.assert_allclose(after["images"], tuned.decode(after["codes"])[:, 0].numpy())
    assert not np.allclose(after["images"], before["images"])

    # a retrained prior makes the tuned decoder stale: ignored, with a warning
    prior.net.pos.data += 0.1
    prior.save(prior_path(run.dir, "maskgit"), ar_prior("maskgit", steps=3))
    with pytest.warns(UserWarning, match="tuned to another maskgit prior"):
        assert tuned_vqvae(run, "maskgit") is None


def test_sample_alikeness_tells_one_slice_for_every_map_from_varied_slices():
    class Prior:
        sampling = (1.0, 0)

        def sample(self, n, seed, temperature, top_k):
            return torch.randint(0, 8, (n, 4, 4), generator=torch.Generator().manual_seed(seed))

    class ByCodes:  # each code a grey level on an 8x8 block: other maps, other slices
        def decode(self, codes):
            return (codes.float() / 7).repeat_interleave(8, 1).repeat_interleave(8, 2)[:, None]

    class OneSlice:  # the same slice whatever the map
        def decode(self, codes):
            ramp = torch.linspace(0, 1, 32).expand(32, 32)
            return ramp.expand(len(codes), 1, 32, 32)

    varied, same = sample_alikeness(Prior(), [ByCodes(), OneSlice()], n=16, seed=0)
    assert varied < 0.5 and same == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("alike,kept", [((0.60, 0.90), False), ((0.60, 0.64), True)])
def test_decoder_is_kept_only_if_samples_stay_as_varied(run_copy, monkeypatch, alike, kept):
    run_path, _ = _maskgit_run(run_copy)
    run = load_run(run_path)
    seen = []

    def measured(prior, decoders, n, seed):  # the tuning's check, with the outcome fixed
        seen.append(len(decoders))
        return list(alike)

    monkeypatch.setattr(decoder_tuning, "sample_alikeness", measured)
    res = tune_decoder(str(run_path), "maskgit", budget(2), progress=False)
    assert seen == [2] and res["kept"] is kept
    assert (res["samples_alike_vqvae"], res["samples_alike_tuned"]) == alike
    assert (run_path / "decoder-maskgit.safetensors").exists() is kept
    decoder = sample_images(run, load_prior(run, "maskgit"), 2)["decoder"]
    assert decoder == ("tuned" if kept else "vqvae")
    # a refusal is recorded for this prior, so `brainvq run` does not spend its budget again
    assert tuning_refused(run.dir, "maskgit") is (not kept)
    if not kept:
        monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
        again = tune_decoder(str(run_path), "maskgit", budget(1), progress=False)
        assert again["status"] == "reused"  # a smaller budget: not redone...
        tune_decoder(str(run_path), "maskgit", budget(1), fresh=True, progress=False)
        assert not tuning_refused(run.dir, "maskgit")  # ...unless fresh; kept now: record gone
        assert (run_path / "decoder-maskgit.safetensors").exists()


def _ctrl_c_at_step(monkeypatch, n):
    """Send this process Ctrl-C (SIGINT) during the n-th tuning step."""
    calls = []

    def loss(*a):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return decode_loss(*a)

    monkeypatch.setattr(decoder_tuning, "decode_loss", loss)


def test_interrupted_tuning_resumes_where_it_stopped(run_copy, monkeypatch):
    run_path, _ = _maskgit_run(run_copy)
    monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
    state = load_run(run_path).dir.stage_state("decoder-maskgit")
    _ctrl_c_at_step(monkeypatch, 3)
    with pytest.raises(Interrupted, match="rerun|again"):
        tune_decoder(str(run_path), "maskgit", budget(6, lr=3e-3), progress=False)
    # the step in flight finished, then the stage saved and stopped
    assert (state / "last.ckpt").exists() and (state / "slipped.safetensors").exists()
    assert not (run_path / "decoder-maskgit.safetensors").exists()
    monkeypatch.setattr(decoder_tuning, "decode_loss", decode_loss)
    slips = []
    monkeypatch.setattr(
        decoder_tuning, "slip_codes", lambda *a, **k: slips.append(1) or slip_codes(*a, **k)
    )
    res = tune_decoder(str(run_path), "maskgit", budget(6, lr=3e-3), progress=False)
    # it went on after the 3 steps done, with the saved slipped maps, to the budget
    assert res["resumed_at"] == 3 and res["steps"] == 6 and slips == [] and res["kept"]
    assert (run_path / "decoder-maskgit.safetensors").exists()
    # the finished tuning keeps its state: the same budget reuses it, a larger one goes on
    assert (state / "finished.json").exists() and (state / "last.ckpt").exists()
    res = tune_decoder(str(run_path), "maskgit", budget(6, lr=3e-3), progress=False)
    assert res["status"] == "reused" and "already done (6 steps" in describe(res)
    res = tune_decoder(str(run_path), "maskgit", budget(8, lr=3e-3), progress=False)
    assert res["status"] == "continued" and res["resumed_at"] == 6 and res["steps"] == 8
    assert "continued a finished tuning from step 6" in describe(res) and slips == []


def test_fresh_or_other_settings_start_the_tuning_over(run_copy, monkeypatch):
    run_path, _ = _maskgit_run(run_copy)
    monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
    state = load_run(run_path).dir.stage_state("decoder-maskgit")

    def interrupted(**values):
        _ctrl_c_at_step(monkeypatch, 2)
        with pytest.raises(Interrupted):
            tune_decoder(str(run_path), "maskgit", budget(4, **values), fresh=True, progress=False)
        monkeypatch.setattr(decoder_tuning, "decode_loss", decode_loss)
        assert (state / "last.ckpt").exists()

    interrupted()
    assert (
        tune_decoder(str(run_path), "maskgit", budget(4, seed=1), progress=False)["resumed_at"] == 0
    )
    interrupted()
    res = tune_decoder(str(run_path), "maskgit", budget(4), fresh=True, progress=False)
    assert res["resumed_at"] == 0
    interrupted()
    (state / "slipped.safetensors").write_bytes(b"not safetensors")
    with pytest.warns(UserWarning, match="starts over"):
        assert tune_decoder(str(run_path), "maskgit", budget(4), progress=False)["resumed_at"] == 0


def test_decoder_tuning_refuses_priors_that_cannot_redraw(run_copy):
    run_path, _ = run_copy
    with pytest.raises(RunError, match="redraws codes"):
        tune_decoder(str(run_path), "transformer", budget(1), progress=False)
    with pytest.raises(Exception, match="max_share"):
        tune_decoder(str(run_path), "maskgit", budget(1, max_share=0.0), progress=False)
    with pytest.raises(RunError, match="budget"):
        tune_decoder(str(run_path), "maskgit", budget(0), progress=False)


def test_cli_tune_decoder_then_sample(run_copy, tmp_path, monkeypatch):
    run_path, _ = _maskgit_run(run_copy)
    _ctrl_c_at_step(monkeypatch, 2)  # an earlier tuning, interrupted
    with pytest.raises(Interrupted):
        tune_decoder(str(run_path), "maskgit", budget(9), progress=False)
    r = brainvq(
        "tune-decoder", "--run", str(run_path), "--max-minutes", "0", "--tune.max_steps", "9",
        "--quiet",
    )  # fmt: skip
    assert "resumed an unfinished tuning at step 2" in r.stdout
    assert "decoder tuned to the maskgit prior" in r.stdout
    assert (run_path / "decoder-maskgit.safetensors").exists()
    r = brainvq(
        "sample", "--run", str(run_path), "-n", "2", "--out", str(tmp_path / "s"), "--quiet"
    )
    assert "tuned decoder" in r.stdout and (tmp_path / "s" / "grid.png").exists()


def test_run_tunes_the_decoder_when_asked_and_reuses_it(keras_root, tmp_path):
    run = tmp_path / "run"
    base = tiny("run", keras_root, run)
    kind = ["--train.max_epochs", "1", "--kind", "maskgit", "--prior.maskgit.steps", "2"]
    r = brainvq(*base, *kind)  # the tiny overrides leave tuning no budget
    assert "decoder tuned" not in r.stdout and not (run / "decoder-maskgit.safetensors").exists()
    # `run`'s tuning stage, called as `run` calls it (the other stages are reused, as the next
    # full run shows): a tuning to this prior that was not kept before is not tried again
    cfg, said = Config(), []
    cfg.train.precision = TEST_PRECISION
    cfg.tune.max_minutes, cfg.tune.max_steps = 0, 2
    refused = run / "decoder-maskgit.refused.json"
    refused.write_text(json.dumps({"prior_sha256": file_digest(run / "prior-maskgit.safetensors")}))
    assert tune_stage(run, "maskgit", cfg, progress=False, say=said.append) is None
    assert "was not kept before" in said[-1] and not (run / "decoder-maskgit.safetensors").exists()
    refused.unlink()
    # the same run with a tuning budget: the trained stages are reused, the decoder is tuned
    # and then decodes the samples
    r = brainvq(*base, *kind, "--tune.max_steps", "2")
    assert "prior already trained" in r.stdout
    assert "decoder tuned to the maskgit prior" in r.stdout and "tuned decoder" in r.stdout
    assert (run / "decoder-maskgit.safetensors").exists()
    assert tune_stage(run, "maskgit", cfg, progress=False, say=said.append) is None
    assert "decoder already tuned to the maskgit prior" in said[-1]
