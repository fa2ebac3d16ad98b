"""Decoder tuning: MaskGIT's redraw, the tuned decoder file, and who decodes samples with it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from brainvq import decoder_tuning
from brainvq.data import load_splits
from brainvq.decoder_tuning import (
    _tune_loss,
    file_digest,
    sample_alikeness,
    slip_codes,
    tune_decoder,
    tuned_vqvae,
    tuning_refused,
)
from brainvq.errors import RunError
from brainvq.nn.maskgit import MaskedCodeTransformer
from brainvq.priors import load_prior, prior_path
from brainvq.runs import load_run
from brainvq.sampling import sample_images
from brainvq.training.prior_stage import train_prior

from .conftest import brainvq, tiny
from .test_priors import K, ar_prior


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
    train_prior(str(run_path), ar_prior("maskgit", maskgit_steps=3), data=str(root), progress=False)
    return run_path, root


def test_tuned_decoder_learns_the_slips_and_decodes_that_priors_samples(run_copy):
    run_path, root = _maskgit_run(run_copy)
    run = load_run(run_path)
    prior = load_prior(run, "maskgit")
    before = sample_images(run, prior, 4, seed=3)
    assert before["decoder"] == "vqvae" and tuned_vqvae(run, "maskgit") is None

    res = tune_decoder(
        str(run_path), "maskgit", minutes=0, max_steps=60, lr=3e-3, seed=0, progress=False
    )
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
        assert _tune_loss(tuned, slipped, x, w) < _tune_loss(run.vqvae, slipped, x, w)

    # samples of that prior are decoded with it (same codes as before: sampling is unchanged)
    after = sample_images(run, prior, 4, seed=3)
    assert after["decoder"] == "tuned" and torch.equal(after["codes"], before["codes"])
    np.testing.assert_allclose(after["images"], tuned.decode(after["codes"])[:, 0].numpy())
    assert not np.allclose(after["images"], before["images"])

    # a retrained prior makes the tuned decoder stale: ignored, with a warning
    prior.net.pos.data += 0.1
    prior.save(prior_path(run.dir, "maskgit"), ar_prior("maskgit", maskgit_steps=3))
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
    res = tune_decoder(str(run_path), "maskgit", minutes=0, max_steps=2, progress=False)
    assert seen == [2] and res["kept"] is kept
    assert (res["samples_alike_vqvae"], res["samples_alike_tuned"]) == alike
    assert (run_path / "decoder-maskgit.safetensors").exists() is kept
    decoder = sample_images(run, load_prior(run, "maskgit"), 2)["decoder"]
    assert decoder == ("tuned" if kept else "vqvae")
    # a refusal is recorded for this prior, so `brainvq run` does not spend its budget again
    assert tuning_refused(run.dir, "maskgit") is (not kept)
    if not kept:
        monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
        tune_decoder(str(run_path), "maskgit", minutes=0, max_steps=1, progress=False)
        assert not tuning_refused(run.dir, "maskgit")  # kept now: the record is gone
        assert (run_path / "decoder-maskgit.safetensors").exists()


def _stop_at_call(monkeypatch, n, exc):
    """Make the n-th tuning step raise exc (a crash or Ctrl-C) before it changes anything."""
    calls = []

    def loss(*a):
        calls.append(1)
        if len(calls) == n:
            raise exc
        return _tune_loss(*a)

    monkeypatch.setattr(decoder_tuning, "_tune_loss", loss)


def test_interrupted_tuning_resumes_where_it_stopped(run_copy, tmp_path, monkeypatch):
    run_path, _ = _maskgit_run(run_copy)
    twin = tmp_path / "twin"
    shutil.copytree(run_path, twin)
    monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
    kw = dict(minutes=0, max_steps=6, lr=3e-3, progress=False)
    whole = tune_decoder(str(twin), "maskgit", checkpoint_seconds=1e9, **kw)
    assert whole["resumed_at"] == 0 and whole["steps"] == 6

    state = decoder_tuning.tuning_state_path(load_run(run_path).dir, "maskgit")
    _stop_at_call(monkeypatch, 4, RuntimeError("crash"))
    with pytest.raises(RuntimeError, match="crash"):
        tune_decoder(str(run_path), "maskgit", checkpoint_seconds=0, **kw)
    assert state.exists() and not (run_path / "decoder-maskgit.safetensors").exists()
    monkeypatch.setattr(decoder_tuning, "_tune_loss", _tune_loss)
    slips = []
    monkeypatch.setattr(
        decoder_tuning, "slip_codes", lambda *a, **k: slips.append(1) or slip_codes(*a, **k)
    )
    res = tune_decoder(str(run_path), "maskgit", checkpoint_seconds=0, **kw)
    # it went on after the 3 saved steps, with the saved slipped maps, to the same decoder
    assert res["resumed_at"] == 3 and res["steps"] == 6 and slips == []
    assert res["slipped_share"] == whole["slipped_share"]
    a = load_file(str(twin / "decoder-maskgit.safetensors"))
    b = load_file(str(run_path / "decoder-maskgit.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not state.exists() and not state.with_name("slipped.safetensors").exists()


def test_ctrl_c_saves_the_tuning_and_fresh_or_other_settings_start_over(run_copy, monkeypatch):
    run_path, _ = _maskgit_run(run_copy)
    monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
    state = decoder_tuning.tuning_state_path(load_run(run_path).dir, "maskgit")
    kw = dict(minutes=0, max_steps=4, progress=False, checkpoint_seconds=1e9)
    _stop_at_call(monkeypatch, 3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        tune_decoder(str(run_path), "maskgit", **kw)
    with safe_open(str(state), framework="pt") as f:
        assert f.metadata()["steps"] == "2"  # saved on the interrupt, not by the clock
    monkeypatch.setattr(decoder_tuning, "_tune_loss", _tune_loss)
    other_seed = tune_decoder(str(run_path), "maskgit", seed=1, **kw)
    assert other_seed["resumed_at"] == 0 and not state.exists()
    _stop_at_call(monkeypatch, 3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        tune_decoder(str(run_path), "maskgit", **kw)
    monkeypatch.setattr(decoder_tuning, "_tune_loss", _tune_loss)
    assert tune_decoder(str(run_path), "maskgit", fresh=True, **kw)["resumed_at"] == 0
    state.write_bytes(b"not safetensors")
    state.with_name("slipped.safetensors").write_bytes(b"nor this")
    with pytest.warns(UserWarning, match="starts over"):
        assert tune_decoder(str(run_path), "maskgit", **kw)["resumed_at"] == 0


def test_decoder_tuning_refuses_priors_that_cannot_redraw(run_copy):
    run_path, _ = run_copy
    with pytest.raises(RunError, match="redraws codes"):
        tune_decoder(str(run_path), "transformer", max_steps=1, progress=False)
    with pytest.raises(RunError, match="max_share"):
        tune_decoder(str(run_path), "maskgit", max_share=0, max_steps=1, progress=False)


def test_cli_tune_decoder_then_sample(run_copy, tmp_path, monkeypatch):
    run_path, _ = _maskgit_run(run_copy)
    _stop_at_call(monkeypatch, 3, KeyboardInterrupt())  # an earlier tuning, interrupted
    with pytest.raises(KeyboardInterrupt):
        tune_decoder(str(run_path), "maskgit", minutes=0, max_steps=9, progress=False)
    r = brainvq("tune-decoder", "--run", str(run_path), "--max-minutes", "0.05", "--quiet")
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
    kind = ["--train.max_epochs", "1", "--kind", "maskgit", "--prior.maskgit_steps", "2"]
    r = brainvq(*base, *kind, "--prior.tune_decoder_minutes", "0")
    assert "decoder tuned" not in r.stdout and not (run / "decoder-maskgit.safetensors").exists()
    # a tuning to this prior that was not kept before is not tried again by `run`
    refused = run / "decoder-maskgit.refused.json"
    refused.write_text(json.dumps({"prior_sha256": file_digest(run / "prior-maskgit.safetensors")}))
    r = brainvq(*base, *kind, "--prior.tune_decoder_minutes", "0.02")
    assert "was not kept before" in r.stdout and not (run / "decoder-maskgit.safetensors").exists()
    refused.unlink()
    # the same run with a tuning budget: the trained stages are reused, the decoder is tuned
    # and then decodes the samples
    r = brainvq(*base, *kind, "--prior.tune_decoder_minutes", "0.02")
    assert "prior already trained" in r.stdout
    assert "decoder tuned to the maskgit prior" in r.stdout and "tuned decoder" in r.stdout
    assert (run / "decoder-maskgit.safetensors").exists()
    r = brainvq(*base, *kind, "--prior.tune_decoder_minutes", "0.02")
    assert "decoder already tuned to the maskgit prior" in r.stdout
