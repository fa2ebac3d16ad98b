"""The adversarial VQ-VAE stage (VQGAN's recipe): the patch discriminator, the adaptive weight,
gradients that reach only their own side, the switch-on step, the weights file, resume and DDP."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from brainvq.config import TuneConfig
from brainvq.errors import BrainVQError, ConfigError
from brainvq.evaluation.c2st import C2STClassifier
from brainvq.nn.patchgan import (
    PatchDiscriminator,
    adaptive_weight,
    frozen,
    hinge_d_loss,
    hinge_g_loss,
)
from brainvq.training import decoder as decoder_tuning
from brainvq.training.prior import train_prior
from brainvq.training.vqvae import VQVAEModule, train_vqvae

from ..conftest import brainvq, tiny, tiny_config
from ..priors.test_priors import ar_prior


def adversarial_config(start: int = 2, **train):
    cfg = tiny_config(**train)
    v = cfg.vqvae
    v.adversarial_weight, v.adversarial_start, v.disc_channels, v.disc_layers = 0.5, start, 8, 2
    return cfg.validate()


@pytest.mark.parametrize(("layers", "side"), [(1, 14), (2, 6), (3, 2)])
def test_patch_discriminator_scores_patches(layers, side):
    d = PatchDiscriminator(8, layers)
    out = d(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 1, side, side)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == layers + 2 and all(hasattr(m, "parametrizations") for m in convs)
    # nothing in common with the two-sample test's classifier
    kinds = {type(m) for m in C2STClassifier().modules()} & {type(m) for m in d.modules()}
    assert kinds <= {torch.nn.Sequential}


def test_hinge_losses():
    assert float(hinge_d_loss(torch.full((3,), 2.0), torch.full((3,), -2.0))) == 0.0
    assert float(hinge_d_loss(torch.zeros(3), torch.zeros(3))) == 1.0
    assert float(hinge_g_loss(torch.tensor([1.0, 3.0]))) == -2.0


def test_adaptive_weight_is_the_gradient_norm_ratio_at_the_last_layer():
    torch.manual_seed(0)
    last = torch.nn.Parameter(torch.randn(4, 3))
    x = torch.randn(5, 4)
    y = x @ last
    a, b = (y**2).mean(), 3 * y.sum()
    ga = torch.autograd.grad(a, last, retain_graph=True)[0]
    gb = torch.autograd.grad(b, last, retain_graph=True)[0]
    w = adaptive_weight(a, b, last)
    assert torch.isclose(w, ga.norm() / (gb.norm() + 1e-4)) and not w.requires_grad
    assert float(adaptive_weight(a, 0 * y.sum() + 1e-9 * b, last, max_weight=50.0)) == 50.0
    (a + b).backward()  # both graphs are still there


def test_each_loss_reaches_only_its_own_side():
    """The discriminator's gradient is its hinge loss's alone (the autoencoder's adversarial term
    sees it frozen); the autoencoder's gets the weighted adversarial term through the images."""
    torch.manual_seed(0)
    cfg = adversarial_config()
    cfg.train.channels_last = False
    m = VQVAEModule(cfg)
    m.log = lambda *a, **k: None
    m.disc.eval()  # spectral norm's power iteration holds still: both passes see one weight
    x = torch.rand(4, 1, 32, 32)
    recon = m.model(x).recon
    image = ((recon - x) ** 2).mean()
    loss = m._adversarial(x, recon, image)
    loss.backward()
    got = [p.grad.clone() for p in m.disc.parameters()]
    m.disc.zero_grad()
    for p in m.model.parameters():
        p.grad = None
    logits = m.disc(torch.cat([x, recon.detach()]))
    hinge_d_loss(*logits.chunk(2)).backward()
    for g, p in zip(got, m.disc.parameters(), strict=True):
        assert torch.allclose(g, p.grad, atol=1e-6)
    with frozen(m.disc):
        assert not any(p.requires_grad for p in m.disc.parameters())
    assert all(p.requires_grad for p in m.disc.parameters())


def _log(run) -> list[dict]:
    with open(run / "logs" / "vqvae" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_stage_switches_on_at_its_step_and_keeps_the_weights_file(vq_run, tmp_path, monkeypatch):
    _, root = vq_run
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "adv"
    r = train_vqvae(str(root), str(run), adversarial_config(start=4, max_epochs=2), progress=False)
    assert r["steps"] == 12  # 6 batches an epoch: one step per batch, as without it
    rows = [row for row in _log(run) if row.get("d_loss_step")]
    assert rows and min(int(row["step"]) for row in rows) == 4
    assert all(float(row["adv_weight_step"]) >= 0 for row in rows)
    # vqvae.safetensors holds the VQ-VAE alone, the same keys as a plain run's
    plain = load_file(vq_run[0] / "vqvae.safetensors")
    assert load_file(run / "vqvae.safetensors").keys() == plain.keys()
    ckpt = torch.load(run / "state" / "vqvae" / "last.ckpt", weights_only=True)
    assert any(k.startswith("disc.") for k in ckpt["state_dict"])
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert len(groups) == 2 and groups[1]["betas"] == (0.5, 0.9)


def test_resume_goes_on_with_the_discriminator_and_refuses_a_changed_setting(
    vq_run, tmp_path, monkeypatch
):
    _, root = vq_run
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "adv"
    train_vqvae(str(root), str(run), adversarial_config(max_epochs=1), progress=False)
    state = torch.load(run / "state" / "vqvae" / "last.ckpt", weights_only=True)
    (run / "vqvae.safetensors").unlink()  # as if stopped before the end: resume from last.ckpt
    r = train_vqvae(str(root), str(run), adversarial_config(max_epochs=2), progress=False)
    assert r["status"] == "resumed" and r["steps"] == 12
    after = torch.load(run / "state" / "vqvae" / "last.ckpt", weights_only=True)
    # the discriminator went on from its saved weights and Adam moments
    key = next(k for k in state["state_dict"] if k.startswith("disc."))
    assert not torch.equal(state["state_dict"][key], after["state_dict"][key])
    assert len(after["optimizer_states"][0]["state"]) == len(state["optimizer_states"][0]["state"])
    (run / "vqvae.safetensors").unlink()
    with pytest.raises(BrainVQError, match="adversarial_weight > 0; resume with the same"):
        train_vqvae(str(root), str(run), tiny_config(max_epochs=3), progress=False)


def test_settings_are_checked():
    cfg = tiny_config()
    cfg.vqvae.disc_layers = 0
    with pytest.raises(ConfigError, match="vqvae.disc_layers"):
        cfg.validate()
    cfg = tiny_config()
    cfg.vqvae.adversarial_weight = -1.0
    with pytest.raises(ConfigError, match="vqvae.adversarial_weight"):
        cfg.validate()


@pytest.mark.slow
def test_two_process_adversarial_stage_keeps_ranks_identical(keras_root, tmp_path):
    """DDP (2 CPU processes, gloo): both ranks end with the same VQ-VAE and discriminator."""
    run = tmp_path / "run"
    brainvq(
        *tiny("train-vqvae", keras_root, run),
        *("--train.max_epochs", "2", "--train.devices", "2", "--train.accelerator", "cpu"),
        *("--train.save_rank_states", "true", "--vqvae.adversarial_weight", "0.5"),
        *("--vqvae.adversarial_start", "2", "--vqvae.disc_channels", "8"),
        subprocess_=True,  # Lightning starts the second rank by running this command again
    )
    a = load_file(run / "state" / "vqvae" / "rank0.safetensors")
    b = load_file(run / "state" / "vqvae" / "rank1.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("disc.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = json.dumps(_log(run))
    assert "d_loss_step" in log


def test_decoder_tuning_goes_on_against_the_vqvae_stages_discriminator(
    vq_run, tmp_path, monkeypatch
):
    _, root = vq_run
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(decoder_tuning, "sample_alikeness", lambda *a: [0.6, 0.6])
    tune = TuneConfig(max_minutes=0.0, max_steps=3, adversarial_weight=0.5)
    for name, cfg, source in (
        ("adv", adversarial_config(max_epochs=1), "the VQ-VAE stage's"),
        ("plain", tiny_config(max_epochs=1), "fresh"),
    ):
        run = tmp_path / name
        train_vqvae(str(root), str(run), cfg, progress=False)
        train_prior(str(run), ar_prior("maskgit", steps=3), data=str(root), progress=False)
        res = decoder_tuning.tune_decoder(str(run), "maskgit", tune, progress=False)
        assert res["discriminator"] == source and res["steps"] == 3 and res["kept"]
        assert "d_loss_step" in (run / "logs" / "decoder-maskgit" / "metrics.csv").read_text()
        assert "tuned against a discriminator" in decoder_tuning.describe(res)
