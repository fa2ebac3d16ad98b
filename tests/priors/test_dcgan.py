"""DCGAN prior: nets, sampling, the prior stage end to end, save/load and resume (tiny models)."""

from __future__ import annotations

import csv

import pytest
import torch

from brainvq.config import Config
from brainvq.errors import ConfigError, RunError
from brainvq.nn.dcgan import Discriminator, Generator, random_translate, snap
from brainvq.priors import (
    DCGANPrior,
    gumbel_argmax,
    load_prior,
    load_prior_file,
    prior_path,
    shape_logits,
)
from brainvq.runs import load_run
from brainvq.training.dcgan import DCGANModule
from brainvq.training.prior import train_prior

from ..conftest import TEST_PRECISION, tiny_config


def tiny_prior(cfg: Config, **values) -> Config:
    """A prior small enough to take a few steps per second."""
    cfg.train.precision = TEST_PRECISION
    p = cfg.prior
    p.kind, p.batch_size, p.max_epochs, p.max_minutes = "dcgan", 8, 1, 0.0
    d = p.dcgan
    d.latent_dim, d.g_channels, d.d_channels, d.steps_per_epoch = 16, 32, 8, 4
    for k, v in values.items():
        setattr(d, k, v)
    return cfg.validate()


@pytest.mark.parametrize("size", [4, 8, 16, 32])
def test_nets_follow_code_map_size(size):
    g = Generator(16, 8, size, channels=32)
    x = g(torch.randn(3, 16))
    assert x.shape == (3, 8, size, size)
    for sn in (True, False):
        for mbstd in (True, False):
            d = Discriminator(8, size, 8, spectral_norm=sn, minibatch_std=mbstd)
            assert d(x).shape == (3,)
    with pytest.raises(ValueError, match="power of two"):
        Generator(16, 8, 12)


def test_snap_picks_nearest_code_and_passes_gradients():
    codebook = torch.randn(10, 4)
    z = (codebook[torch.tensor([3, 7, 1, 0])] + 0.01).view(1, 2, 2, 4).permute(0, 3, 1, 2)
    z = z.clone().requires_grad_(True)
    q, codes = snap(z, codebook)
    assert codes.tolist() == [[[3, 7], [1, 0]]]
    assert torch.allclose(q, codebook[codes].permute(0, 3, 1, 2))
    q.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


@pytest.mark.parametrize("design", ["snap", "gumbel", "distance"])
def test_samples_are_valid_and_seeded(design):
    cfg = tiny_prior(Config(), design=design)
    prior = DCGANPrior(cfg.prior.dcgan, torch.randn(32, 8), 8)
    with torch.no_grad():  # DCGAN's init gives near-constant outputs: spread them like a trained G
        for w in prior.generator.parameters():
            w.normal_(0, 0.5)
    a = prior.sample(6, seed=0)
    assert a.dtype == torch.int64 and a.shape == (6, 8, 8)
    assert int(a.min()) >= 0 and int(a.max()) < 32
    assert torch.equal(a, prior.sample(6, seed=0))
    assert not torch.equal(a, prior.sample(6, seed=1))
    assert torch.equal(prior.sample(6, seed=0, batch_size=4), a)  # batching does not change them
    assert torch.equal(prior.sample(6, seed=0, batch_size=1), a)


def test_distance_logits_rank_codes_by_nearness():
    """Design "distance": the logits of a latent are highest at its nearest code, in the order
    of the distances (no K-channel layer)."""
    cfg = tiny_prior(Config(), design="distance")
    codebook = torch.randn(32, 8)
    prior = DCGANPrior(cfg.prior.dcgan, codebook, 8)
    z = torch.randn(2, 8, 4, 4)
    logits = prior._logits(z)
    assert logits.shape == (2, 32, 4, 4)
    dist = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 8), codebook)  # (32 positions, K)
    flat = logits.permute(0, 2, 3, 1).reshape(-1, 32)
    assert torch.equal(flat.argmax(dim=1), dist.argmin(dim=1))
    assert torch.allclose(flat - flat[:, :1], -(dist**2 - dist[:, :1] ** 2) / 2, atol=1e-4)


def test_cdf_draw_reads_each_positions_logits_and_draws_the_same_distribution():
    cfg = tiny_prior(Config(), design="gumbel")
    prior = DCGANPrior(cfg.prior.dcgan, torch.randn(32, 8), 8).eval()
    with torch.no_grad():
        for w in prior.generator.parameters():
            w.normal_(0, 0.5)
        argmax = prior._raw(prior.noise(6, 3)).argmax(dim=1)
    # top-1 leaves one code per position: both draws must find that position's argmax
    assert torch.equal(prior.sample(6, seed=3, top_k=1, draw="cdf"), argmax)
    assert torch.equal(prior.sample(6, seed=3, top_k=1, draw="gumbel"), argmax)
    cdf = prior.sample(300, seed=0)  # the default draw
    assert torch.equal(cdf, prior.sample(300, seed=0, batch_size=7, draw="cdf"))
    gumbel = prior.sample(300, seed=0, draw="gumbel")
    assert torch.equal(gumbel, prior.sample(300, seed=0, batch_size=64, draw="gumbel"))
    assert not torch.equal(cdf, gumbel)  # other numbers, other maps
    # same noise, so the same distribution at every position: the code frequencies agree
    freq = [torch.bincount(c.flatten(), minlength=32) / c.numel() for c in (cdf, gumbel)]
    assert 0.5 * (freq[0] - freq[1]).abs().sum() < 0.05
    with pytest.raises(ValueError, match="draw"):
        prior.sample(2, draw="inverse")


@pytest.mark.parametrize(("temperature", "top_k"), [(0.8, 0), (1.0, 3)])
def test_gumbel_argmax_is_the_out_of_place_formula(temperature, top_k):
    """The in-place Gumbel-max draw gives the codes of the formula it replaced, bit for bit."""
    logits = torch.randn(5, 32, 8, 8) * 3
    u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(4)).clamp_(1e-9, 1 - 1e-9)
    shaped = shape_logits(logits, temperature, top_k, dim=1)
    expected = (shaped - torch.log(-torch.log(u))).argmax(dim=1)
    g = torch.Generator().manual_seed(4)
    assert torch.equal(gumbel_argmax(logits.clone(), temperature, top_k, g), expected)


@pytest.mark.parametrize(
    "design,d_input", [("snap", "codes"), ("distance", "codes"), ("gumbel", "both")]
)
def test_train_prior_end_to_end(run_copy, design, d_input):
    run_path, root = run_copy
    cfg = tiny_prior(tiny_config(), design=design, d_input=d_input)
    out = train_prior(str(run_path), cfg, data=str(root), progress=False)
    assert out["status"] == "trained" and out["epochs"] == 1
    weights = run_path / "prior-dcgan.safetensors"
    assert weights.exists() and (run_path / "state" / "prior-dcgan" / "last.ckpt").exists()
    rows = list(csv.DictReader((run_path / "logs" / "prior-dcgan" / "metrics.csv").open()))
    for key in ("g_loss_step", "d_loss_step", "d_real_step", "d_fake_step", "fake_codes_step"):
        assert key in rows[0]

    run = load_run(run_path)
    prior = load_prior(run)
    assert prior.design == design
    codes = prior.sample(5, seed=3)
    assert codes.shape == (5, 8, 8) and int(codes.max()) < 32
    assert torch.equal(codes, load_prior(run).sample(5, seed=3))
    assert run.vqvae.decode(codes).shape == (5, 1, 32, 32)
    # round trip: save again and load, same weights, same samples
    prior.save(run_path / "again.safetensors", cfg)
    again = load_prior_file(run_path / "again.safetensors")
    assert torch.equal(again.sample(5, seed=3), codes)
    # a finished stage is reused, --fresh trains again
    assert train_prior(str(run_path), cfg, data=str(root), progress=False)["status"] == "reused"
    fresh = train_prior(str(run_path), cfg, data=str(root), fresh=True, progress=False)
    assert fresh["status"] == "trained"


def test_train_prior_resumes(run_copy):
    run_path, root = run_copy
    cfg = tiny_prior(tiny_config())
    first = train_prior(str(run_path), cfg, data=str(root), progress=False)
    prior_path(load_run(run_path).dir).unlink()  # as if interrupted before the weights were saved
    cfg.prior.max_epochs = 2
    second = train_prior(str(run_path), cfg, progress=False)  # data root from RUN/data.json
    assert second["status"] == "resumed"
    assert second["epochs"] == 2 and second["steps"] > first["steps"]
    assert prior_path(load_run(run_path).dir).exists()


def test_load_prior_refuses_missing_or_foreign(run_copy, tmp_path):
    run_path, root = run_copy
    run = load_run(run_path)
    with pytest.raises(RunError, match="train-prior"):
        load_prior(run)
    cfg = tiny_prior(tiny_config())
    DCGANPrior(cfg.prior.dcgan, torch.randn(32, 8), 8).save(prior_path(run.dir), cfg)
    with pytest.raises(RunError, match="another VQ-VAE codebook"):
        load_prior(run)


def test_random_translate_moves_whole_pixels():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 16, 16) + 1  # every pixel > 0, so the zero fill is told apart
    x.requires_grad_(True)
    y = random_translate(x, max_frac=0.25)
    moved = 0
    for xi, yi in zip(x.detach(), y.detach(), strict=True):
        kept = yi[yi != 0]
        # a pure shift: every non-zero output pixel is an input pixel, unblurred
        assert torch.isin(kept, xi).all()
        assert kept.numel() >= (16 - 4) ** 2  # at most 4 = 0.25 * 16 pixels off each axis
        moved += int(kept.numel() < 256)
    assert moved > 32  # most images were shifted, by their own offsets
    y.sum().backward()  # differentiable: the generator learns through it
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(random_translate(x.detach(), max_frac=0.0), x.detach())


@pytest.mark.parametrize("d_input", ["image", "both"])
def test_image_discriminator_teaches_generator_through_frozen_decoder(run_copy, d_input):
    run_path, _ = run_copy
    run = load_run(run_path)
    cfg = tiny_prior(tiny_config(), d_input=d_input)
    codebook = run.vqvae.quantizer.embedding.detach().float()
    with pytest.raises(ValueError, match="decoder"):
        DCGANModule(cfg, codebook, 8)
    module = DCGANModule(cfg, codebook, 8, decoder=run.vqvae.decoder)
    assert len(module.discriminators()) == (2 if d_input == "both" else 1)
    module.train()
    assert not module.decoder.training  # frozen: stays in eval mode
    fake, _, _ = module.prior(torch.randn(4, cfg.prior.dcgan.latent_dim))
    judged = module._inputs(None, fake)
    image_disc, _, image = judged[-1]
    assert image_disc is module.disc_image and image.shape == (4, 1, 32, 32)
    image_disc(image).mean().backward()
    grads = [w.grad for w in module.prior.generator.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(w.grad is None for w in module.decoder.parameters())
    # the decoder copy is the run's decoder, not a new one
    ref = dict(run.vqvae.decoder.named_parameters())
    for name, w in module.decoder.named_parameters():
        assert torch.equal(w, ref[name])


def test_prior_config_is_validated():
    for key, value in (
        ("prior.dcgan.design", '"round"'),
        ("prior.dcgan.loss", '"wgan"'),
        ("prior.dcgan.ema_decay", 1.0),
        ("prior.dcgan.d_input", '"pixels"'),
        ("tune.max_minutes", -1.0),
    ):
        with pytest.raises(ConfigError, match=key):
            Config().override([f"{key}={value}"])


def two_kinds(n: int, size: int = 8) -> torch.Tensor:
    """n fake code maps, half of each kind: kind 0 is code 1 above code 2 (top and bottom
    halves), kind 1 is code 3 left of code 4; codes 0 and 5-7 never appear."""
    maps = torch.empty(n, size, size, dtype=torch.long)
    h = size // 2
    maps[0::2, :h], maps[0::2, h:] = 1, 2
    maps[1::2, :, :h], maps[1::2, :, h:] = 3, 4
    return maps


def kind_of(maps: torch.Tensor) -> torch.Tensor:
    """Per map: 0 or 1 where at least 90% of its codes are those of that kind, else -1."""
    ref = two_kinds(2, maps.shape[-1])
    agree = torch.stack([(maps == r).float().mean(dim=(1, 2)) for r in ref], dim=1)  # (n, 2)
    best = agree.argmax(dim=1)
    return torch.where(agree.max(dim=1).values >= 0.9, best, torch.full_like(best, -1))


@pytest.mark.usefixtures("one_thread")
def test_a_tiny_dcgan_learns_to_draw_both_kinds_of_maps_it_was_shown():
    """Trained on two kinds of code maps, the generator draws both, each cleanly: a generator
    that ignores its noise (one kind only) or draws noise-blends (neither) fails."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    cfg = tiny_prior(Config())
    cfg.prior.batch_size = 16
    codebook = 2.0 * torch.eye(8)  # K = 8 codes, D = 8, each its own axis
    module = DCGANModule(cfg, codebook, 8)
    data = DataLoader(TensorDataset(two_kinds(64)), batch_size=16, shuffle=True)
    trainer = L.Trainer(
        max_steps=2 * 600, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(module, data)
    prior = module.sampler()
    prior.recalibrate_bn()
    kinds = kind_of(prior.sample(200, seed=1))
    shares = [float((kinds == k).float().mean()) for k in (0, 1)]
    assert min(shares) >= 0.2, shares  # both kinds, not one
    assert sum(shares) >= 0.8, shares  # and each drawn cleanly


def test_dcgan_step_budget_is_its_default_and_a_larger_one_continues(run_copy):
    """prior.max_steps 0: the stage ends at prior.dcgan.step_budget, on any machine's clock;
    asked again with a larger step budget it goes on from there."""
    from brainvq.training.prior import describe

    run_path, root = run_copy
    cfg = tiny_prior(tiny_config(), step_budget=5)
    cfg.prior.max_epochs, cfg.prior.max_minutes = 100, 600.0
    res = train_prior(str(run_path), cfg, data=str(root), progress=False)
    assert res["steps"] == 5 and res["finished"]["stopped_by"] == "steps"
    assert "its step budget (prior.max_steps = 5)" in describe(res)
    assert train_prior(str(run_path), cfg, progress=False)["status"] == "reused"
    cfg.prior.dcgan.step_budget = 8
    more = train_prior(str(run_path), cfg, progress=False)
    assert more["status"] == "continued" and more["steps"] == 8
    cfg.prior.max_steps = 6  # prior.max_steps, where set, wins over the DCGAN's own budget
    assert train_prior(str(run_path), cfg, progress=False)["status"] == "reused"


def test_ctrl_c_saves_a_dcgan_stage_after_the_step_and_a_rerun_resumes_it(run_copy, monkeypatch):
    """Ctrl-C in the middle of the DCGAN stage: it saves after the step in flight (its D and G
    updates both done), writes no weights, and the same call then resumes to its budget."""
    import os
    import signal

    from brainvq.errors import Interrupted

    run_path, root = run_copy
    real_step, calls = DCGANModule.training_step, []

    def step(self, batch, batch_idx):
        calls.append(self.global_step)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(DCGANModule, "training_step", step)
    cfg = tiny_prior(tiny_config(), step_budget=6)
    cfg.prior.max_epochs = 100
    with pytest.raises(Interrupted, match="checkpoint saved in .*prior-dcgan; run the same"):
        train_prior(str(run_path), cfg, data=str(root), progress=False)
    state = torch.load(run_path / "state" / "prior-dcgan" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2 * 3  # 3 whole steps: a D and a G update each
    assert not prior_path(load_run(run_path).dir).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.setattr(DCGANModule, "training_step", real_step)
    res = train_prior(str(run_path), cfg, progress=False)
    assert res["status"] == "resumed" and res["steps"] == 6
    assert prior_path(load_run(run_path).dir).exists()
