"""Autoregressive priors (gated PixelCNN, transformer) and the one prior interface."""

from __future__ import annotations

import json

import pytest
import tomli_w
import torch
from PIL import Image
from safetensors.torch import save_file

from brainvq.cli import build_parser
from brainvq.config import Config
from brainvq.errors import ConfigError, RunError
from brainvq.nn.pixelcnn import GatedPixelCNN
from brainvq.nn.transformer import CodeTransformer
from brainvq.priors import (
    DCGANPrior,
    TransformerPrior,
    build_prior,
    categorical_picker,
    load_prior,
    load_prior_file,
    prior_path,
    shape_logits,
    trained_kinds,
)
from brainvq.runs import load_run
from brainvq.sampling import sample_images
from brainvq.training.prior import train_prior

from ..conftest import brainvq, tiny, tiny_config

K = 12


def tiny_nets():
    torch.manual_seed(0)
    return {
        "pixelcnn": GatedPixelCNN(K, channels=16, layers=3, kernel=3),
        "transformer": CodeTransformer(K, 36, dim=32, layers=2, heads=4, kv_heads=2),
        "transformer-window": CodeTransformer(K, 36, dim=32, layers=2, heads=2, window=5),
    }


def ar_prior(kind: str, **values) -> Config:
    """A config with a tiny prior of `kind` trained by predicting codes; values set prior.KEY
    where the prior section has KEY, else prior.<kind>.KEY."""
    cfg = tiny_config()
    p = cfg.prior
    p.kind, p.batch_size, p.max_epochs, p.max_minutes = kind, 8, 1, 0.0
    p.pixelcnn.channels, p.pixelcnn.layers, p.pixelcnn.kernel = 16, 2, 3
    for sizes in (p.transformer, p.maskgit):
        sizes.dim, sizes.layers, sizes.heads = 16, 1, 2
    for section in (p.pixelcnn, p.transformer, p.maskgit):
        section.warmup_steps = 1
    for k, v in values.items():
        setattr(
            p if k in ("max_epochs", "max_steps", "temperature", "top_k") else p.settings(), k, v
        )
    return cfg.validate()


@pytest.mark.parametrize("name", ["pixelcnn", "transformer", "transformer-window"])
def test_changing_a_code_never_changes_earlier_logits(name):
    net = tiny_nets()[name].eval()
    codes = torch.randint(0, K, (3, 6, 6))
    base = net(codes).flatten(2)  # (B, K, 36) in raster order
    for t in range(36):
        changed = codes.clone().flatten(1)
        changed[:, t] = (changed[:, t] + 1 + torch.arange(3)) % K
        out = net(changed.view(3, 6, 6)).flatten(2)
        assert torch.equal(out[:, :, : t + 1], base[:, :, : t + 1]), f"position {t} leaks back"
        if t < 35:  # and the change does reach later positions (the model is not blind)
            assert not torch.allclose(out[:, :, t + 1 :], base[:, :, t + 1 :])


@pytest.mark.parametrize("name", ["pixelcnn", "transformer", "transformer-window"])
def test_incremental_sampling_matches_forward(name):
    """The row/position caches of the PixelCNN and the KV cache give forward's logits."""
    net = tiny_nets()[name].eval()
    seen = []
    draw = categorical_picker(1.0, 0, torch.Generator().manual_seed(0))

    def pick(logits):
        seen.append(logits)
        return draw(logits)

    fn = net.sample if name == "pixelcnn" else net.generate
    codes = fn(4, (6, 6), pick)
    assert codes.shape == (4, 6, 6) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < K
    full = net(codes).flatten(2).transpose(1, 2)  # (B, 36, K)
    torch.testing.assert_close(torch.stack(seen, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "transformer-window"])
def test_cached_and_uncached_transformer_sampling_agree(name):
    net = tiny_nets()[name].eval()
    runs = []
    for cache in (True, False):
        pick = categorical_picker(1.0, 0, torch.Generator().manual_seed(7))
        runs.append(net.generate(5, (6, 6), pick, cache=cache))
    assert torch.equal(runs[0], runs[1])


def test_temperature_and_top_k():
    logits = torch.tensor([[0.0, 1.0, 3.0, 2.0]])
    top2 = shape_logits(logits, 1.0, 2)
    assert torch.isinf(top2[0, :2]).all() and torch.equal(top2[0, 2:], logits[0, 2:])
    torch.testing.assert_close(shape_logits(logits, 0.5, 0), logits * 2)
    many = logits.expand(2000, 4)
    pick = categorical_picker(1.0, 1, torch.Generator().manual_seed(0))
    assert (pick(many) == 2).all()  # top-1 is the argmax whatever the seed
    cold = categorical_picker(0.05, 0, torch.Generator().manual_seed(0))(many)
    warm = categorical_picker(5.0, 0, torch.Generator().manual_seed(0))(many)
    assert (cold == 2).float().mean() > 0.99 and torch.bincount(warm, minlength=4).min() > 300
    with pytest.raises(ValueError, match="temperature"):
        shape_logits(logits, 0.0, 0)


def structured_maps(n: int, seed: int) -> torch.Tensor:
    """6x6 maps with strong structure: each row repeats one code, rows count up from a start."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, K, (n, 1, 1), generator=g)
    rows = (start + torch.arange(6)[None, :, None]) % K
    return rows.expand(n, 6, 6).clone()


def fitted_prior(kind: str, updates: int, **values):
    """A tiny prior of `kind` after `updates` Adam steps on 64 structured maps."""
    torch.manual_seed(0)
    sizes = {"channels": 32} if kind == "pixelcnn" else {"dim": 32, "layers": 2}
    cfg = ar_prior(kind, **sizes, **values)
    prior = build_prior(cfg.prior, torch.randn(K, 4), 6)
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    train = structured_maps(64, seed=0)
    for _ in range(updates):
        opt.zero_grad()
        prior.loss(train).backward()
        opt.step()
    return prior.eval(), train


@pytest.mark.parametrize("kind", ["pixelcnn", "transformer"])
def test_likelihood_prefers_real_maps_after_a_short_fit(kind):
    prior, _ = fitted_prior(kind, 60)
    real = structured_maps(16, seed=1)
    perm = torch.randperm(36, generator=torch.Generator().manual_seed(0))
    shuffled = real.flatten(1)[:, perm].view(16, 6, 6)
    ll_real, ll_shuf = prior.log_likelihood(real), prior.log_likelihood(shuffled)
    assert torch.isfinite(ll_real).all() and torch.isfinite(ll_shuf).all()
    bits_real, bits_shuf = prior.bits_per_code(real), prior.bits_per_code(shuffled)
    assert bits_real.mean() < 1.0 < bits_shuf.mean()  # log2(12) = 3.6 bits is chance
    assert (bits_real < bits_shuf).all()


def test_default_temperature_is_the_kinds_own_unless_set(capsys):
    pcfg = Config().prior
    assert pcfg.temperature == 0
    for kind, t in [("dcgan", 0.8), ("pixelcnn", 1.0), ("transformer", 0.6), ("maskgit", 0.6)]:
        pcfg.kind = kind
        assert pcfg.sampling_temperature() == t
    pcfg.temperature = 0.9
    assert pcfg.sampling_temperature() == 0.9
    # on the command line a temperature must be > 0
    for bad in ["0", "-1", "x"]:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(["sample", "--run", "r", "--temperature", bad])
        assert e.value.code == 2 and "must be a number > 0" in capsys.readouterr().err


def test_dcgan_has_no_likelihood_but_takes_temperature():
    cfg = tiny_config()
    cfg.prior.dcgan.latent_dim, cfg.prior.dcgan.g_channels = 8, 16
    cfg.prior.dcgan.design = "gumbel"  # the default (snap) has no distribution to shape
    prior = DCGANPrior(cfg.prior.dcgan, torch.randn(32, 8), 8)
    with pytest.raises(RunError, match="no likelihood"):
        prior.bits_per_code(torch.zeros(1, 8, 8, dtype=torch.long))
    a = prior.sample(3, seed=1, temperature=0.5, top_k=4)
    assert torch.equal(a, prior.sample(3, seed=1, temperature=0.5, top_k=4))
    assert a.shape == (3, 8, 8)


@pytest.mark.parametrize("kind", ["pixelcnn", "transformer"])
def test_train_sample_and_reload_through_the_run_folder(run_copy, kind):
    run_path, root = run_copy
    cfg = ar_prior(kind)
    out = train_prior(str(run_path), cfg, data=str(root), progress=False)
    assert out["status"] == "trained" and out["kind"] == kind
    assert 0 < out["best_val_bpc"] < 10  # finite, measured on the validation maps
    run = load_run(run_path)
    assert trained_kinds(run.dir) == [kind]
    prior = load_prior(run, kind)
    # prior.temperature 0 (the default): the kind's own temperature
    assert prior.kind == kind and prior.sampling == ({"pixelcnn": 1.0, "transformer": 0.6}[kind], 0)
    codes = prior.sample(3, seed=5)
    assert codes.shape == (3, 8, 8) and int(codes.max()) < 32
    assert torch.equal(codes, load_prior(run, kind).sample(3, seed=5))
    assert not torch.equal(codes, prior.sample(3, seed=6))
    assert run.vqvae.decode(codes).shape == (3, 1, 32, 32)
    # sample_images decodes a few maps at a time: the images of one pass over all of them
    few, all_at_once = (sample_images(run, prior, 11, seed=5, batch_size=b) for b in (4, 64))
    assert torch.equal(few["codes"], all_at_once["codes"])
    assert abs(few["images"] - all_at_once["images"]).max() < 1e-5
    # round trip: same weights, same likelihoods, same samples
    prior.save(run_path / "again.safetensors", cfg)
    again = load_prior_file(run_path / "again.safetensors")
    torch.testing.assert_close(again.log_likelihood(codes), prior.log_likelihood(codes))
    assert torch.equal(again.sample(3, seed=5), codes)
    with pytest.raises(RunError, match="another VQ-VAE codebook"):
        build_prior(cfg.prior, torch.randn(32, 8), 8).save(prior_path(run.dir, kind), cfg)
        load_prior(run, kind)


def test_ar_stage_keeps_the_best_validation_weights_and_resumes(run_copy):
    run_path, root = run_copy
    cfg = ar_prior("pixelcnn", max_epochs=1)
    first = train_prior(str(run_path), cfg, data=str(root), progress=False)
    prior_path(load_run(run_path).dir, "pixelcnn").unlink()  # as if stopped before saving
    cfg.prior.max_epochs = 3
    second = train_prior(str(run_path), cfg, progress=False)
    assert second["status"] == "resumed" and second["steps"] > first["steps"]
    assert second["best_val_bpc"] <= first["best_val_bpc"]
    ckpt = torch.load(
        run_path / "state" / "prior-pixelcnn" / "last.ckpt", weights_only=True, map_location="cpu"
    )
    assert ckpt["best_val_bpc"] == pytest.approx(second["best_val_bpc"])
    saved = load_prior(load_run(run_path), "pixelcnn").state_dict()
    for k, v in ckpt["best_state"].items():
        assert torch.equal(saved[k], v), k


def test_transformer_rejects_other_map_sizes():
    prior = TransformerPrior(ar_prior("transformer").prior.transformer, torch.randn(K, 4), 6)
    with pytest.raises(ValueError, match="this model takes 36"):
        prior(torch.zeros(1, 5, 5, dtype=torch.long))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kind", "vae"),
        ("pixelcnn.kernel", 4),
        ("transformer.kv_heads", 3),
        ("temperature", -0.5),
        ("top_k", -1),
        ("maskgit.dropout", 1.0),
    ],
)
def test_ar_config_is_validated(key, value):
    section, _, name = key.rpartition(".")
    with pytest.raises(
        ConfigError, match=f"prior.{section}.*{name}" if section else f"prior.{key}"
    ):
        Config().override([f"prior.{key}={value!r}".replace("'", '"')])


AR_TINY = ["--prior.batch_size", "8", "--train.max_epochs", "2"]


def test_cli_run_with_transformer_then_score(keras_root, tmp_path):
    run = tmp_path / "run"
    r = brainvq(*tiny("run", keras_root, run), "--kind", "transformer", *AR_TINY)
    assert "transformer prior trained" in r.stdout and "bits/code on test maps" in r.stdout
    s = json.loads((run / "metrics.json").read_text())["samples-transformer"]
    # run scores the 64 samples it wrote (eval.n_samples is for evaluate's own draws)
    assert s["n_samples"] == 64 and 0 < s["test_bits_per_code"] < 10
    assert (run / "prior-transformer.safetensors").exists()
    assert (run / "figures" / "transformer_samples.png").exists()

    test_dir = keras_root / "keras_png_slices_test"
    one = sorted(test_dir.glob("*.png"))[0]
    r = brainvq("score", "--run", str(run), str(one), str(test_dir))
    lines = r.stdout.splitlines()
    assert len(lines) == 1 + 1 + 6 + 1 and "real test slices" in lines[-1]
    first = float(lines[1].split()[1])
    # the CLI prints what the API computes
    from brainvq.codes import encode_images
    from brainvq.data import decode_slice

    loaded = load_run(run)
    codes = encode_images(loaded, decode_slice(one)[0][None])
    api = load_prior(loaded, "transformer").bits_per_code(torch.from_numpy(codes))
    assert first == pytest.approx(float(api[0]), abs=1e-3)
    # sampling takes temperature / top-k, repeatable under a seed
    for name in ("a", "b"):
        brainvq(
            "sample", "--run", str(run), "-n", "3", "--top-k", "5", "--temperature", "0.8",
            "--seed", "1", "--out", str(tmp_path / name), "--quiet",
        )  # fmt: skip
    assert (tmp_path / "a" / "sample_0002.png").read_bytes() == (
        tmp_path / "b" / "sample_0002.png"
    ).read_bytes()
    bad = brainvq("score", "--run", str(run), str(tmp_path / "nope.png"), check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope.png" in bad.stderr
    # a colour slice of another size is scored, with a warning for each change
    rgb = tmp_path / "rgb.png"
    Image.open(one).convert("RGB").resize((64, 64)).save(rgb)
    r = brainvq("score", "--run", str(run), str(rgb))
    assert "rgb.png" in r.stdout
    assert "brainvq: warning: 1 slice(s) were RGB converted to grayscale: rgb.png" in r.stderr
    assert "brainvq: warning: 1 slice(s) were resized from 64x64 to 32x32: rgb.png" in r.stderr


def test_prior_files_written_before_the_per_kind_sections_still_load(tmp_path):
    cfg = ar_prior("maskgit", steps=3)
    prior = build_prior(cfg.prior, torch.randn(K, 4), 6)
    old = cfg.to_dict()
    sections = {k: old["prior"].pop(k) for k in ("dcgan", "pixelcnn", "transformer", "maskgit")}
    m = sections["maskgit"]
    old["prior"].update(
        transformer_dim=m["dim"],
        transformer_layers=m["layers"],
        transformer_heads=m["heads"],
        transformer_kv_heads=m["kv_heads"],
        maskgit_steps=m["steps"],
        maskgit_noise=m["noise"],
        lr=m["lr"],
        tune_decoder_minutes=0.0,
    )
    del old["tune"]
    meta = {"config": tomli_w.dumps(old), "kind": "prior-maskgit", "code_size": "6"}
    save_file({k: v.contiguous() for k, v in prior.state_dict().items()}, tmp_path / "p", meta)
    loaded = load_prior_file(tmp_path / "p")
    assert loaded.steps == 3 and torch.equal(loaded.sample(2, seed=1), prior.sample(2, seed=1))
