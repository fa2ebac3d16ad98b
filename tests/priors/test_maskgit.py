"""The MaskGIT prior: hidden-code training, iterative parallel decoding, the run-folder round trip."""

from __future__ import annotations

import math

import pytest
import torch

from brainvq.config import Config
from brainvq.errors import ConfigError, RunError
from brainvq.nn.maskgit import MaskedCodeTransformer, hidden_share
from brainvq.priors import MaskGITPrior, categorical_picker, load_prior, load_prior_file
from brainvq.runs import load_run
from brainvq.training.prior import train_prior

from .test_priors import K, ar_prior, fitted_prior


def tiny_net() -> MaskedCodeTransformer:
    torch.manual_seed(0)
    return MaskedCodeTransformer(K, 36, dim=32, layers=2, heads=4, kv_heads=2).eval()


def test_hidden_share_is_the_cosine_schedule():
    assert float(hidden_share(0.0)) == pytest.approx(1.0)
    assert float(hidden_share(1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(hidden_share(0.5)) == pytest.approx(2**-0.5)


def test_hide_masks_a_scheduled_share_and_leaves_the_rest():
    net = tiny_net()
    codes = torch.randint(0, K, (400, 6, 6))
    tokens, hidden = net.hide(codes, torch.Generator().manual_seed(0))
    counts = hidden.flatten(1).sum(1)
    assert counts.min() >= 1 and counts.max() <= 36
    assert (tokens[hidden] == K).all() and torch.equal(tokens[~hidden], codes[~hidden])
    # the share hidden has the mean of cos(pi r / 2) over r in [0, 1]: 2 / pi (ceil adds < 1 code)
    assert (counts.float().mean() / 36).item() == pytest.approx(2 / torch.pi, abs=0.06)
    again, _ = net.hide(codes, torch.Generator().manual_seed(0))
    assert torch.equal(tokens, again)


def test_every_position_sees_codes_on_both_sides():
    net = tiny_net()
    codes = torch.randint(0, K, (2, 6, 6))
    base = net(codes).flatten(2)
    changed = codes.clone()
    changed[:, 5, 5] = (changed[:, 5, 5] + 1) % K  # the last code in raster order
    after = net(changed).flatten(2)
    assert not torch.allclose(base[..., 0], after[..., 0])  # the first position sees it


def test_generate_fills_every_code_in_the_given_steps_and_repeats_under_a_seed():
    net = tiny_net()
    calls, done = [], []
    net.blocks[0].register_forward_hook(lambda *a: calls.append(1))

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        pick = categorical_picker(1.0, 0, g)
        return net.generate(5, (6, 6), pick, 4, 4.5, g, done.append, chunk=5)  # 1 pass a step

    a = draw(3)
    assert a.shape == (5, 6, 6) and int(a.min()) >= 0 and int(a.max()) < K
    assert len(calls) == 4 and sum(done) == 36  # 4 passes of the network; progress adds up
    assert torch.equal(a, draw(3)) and not torch.equal(a, draw(4))


def test_maskgit_learns_structured_maps_and_has_no_likelihood():
    prior, train = fitted_prior("maskgit", 300, steps=12)
    assert isinstance(prior, MaskGITPrior)
    assert prior.loss(train).item() == prior.loss(train).item()  # fixed hiding in eval mode
    samples = prior.sample(32, seed=0)
    # a structured map: each row one code, each row one more than the row above (mod K)
    rows_constant = (samples == samples[:, :, :1]).float().mean()
    steps_up = ((samples[:, 1:, 0] - samples[:, :-1, 0]) % K == 1).float().mean()
    assert rows_constant > 0.9 and steps_up > 0.85  # random maps: 1/12 and 1/12
    with pytest.raises(RunError, match="no likelihood"):
        prior.bits_per_code(samples)


def test_maskgit_through_the_run_folder(run_copy):
    run_path, root = run_copy
    cfg = ar_prior("maskgit", steps=3)
    out = train_prior(str(run_path), cfg, data=str(root), progress=False)
    assert out["status"] == "trained" and out["kind"] == "maskgit"
    assert 0 < out["best_val_bpc"] < 10
    run = load_run(run_path)
    prior = load_prior(run, "maskgit")
    assert prior.steps == 3 and prior.sampling == (0.6, 0)  # maskgit's own temperature
    codes = prior.sample(3, seed=5, top_k=4)
    assert codes.shape == (3, 8, 8) and int(codes.max()) < 32
    assert run.vqvae.decode(codes).shape == (3, 1, 32, 32)
    prior.save(run_path / "again.safetensors", cfg)
    again = load_prior_file(run_path / "again.safetensors")
    assert torch.equal(again.sample(3, seed=5, top_k=4), codes)


@pytest.mark.parametrize(("key", "value"), [("steps", 0), ("noise", -1.0)])
def test_maskgit_config_is_validated(key, value):
    with pytest.raises(ConfigError, match=f"prior.maskgit.{key}"):
        Config().override([f"prior.maskgit.{key}={value}"])


def test_hide_with_a_share_hides_exactly_that_many_codes():
    net = tiny_net()
    codes = torch.randint(0, K, (50, 6, 6))
    tokens, hidden = net.hide(codes, torch.Generator().manual_seed(1), share=0.25)
    assert (hidden.flatten(1).sum(1) == 9).all()  # round(0.25 * 36), in every map
    assert (tokens[hidden] == K).all() and torch.equal(tokens[~hidden], codes[~hidden])
    _, tiny_share = net.hide(codes, torch.Generator().manual_seed(1), share=0.001)
    assert (tiny_share.flatten(1).sum(1) == 1).all()  # never none


def test_generate_from_a_start_keeps_its_codes_and_joins_the_schedule_late():
    net = tiny_net()
    calls = []
    net.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    codes = torch.randint(0, K, (4, 6, 6))
    g = torch.Generator().manual_seed(0)
    start, hidden = net.hide(codes, g, share=0.25)
    out = net.generate(4, (6, 6), categorical_picker(1.0, 0, g), 8, 4.5, g, None, start)
    assert torch.equal(out[~hidden], codes[~hidden]) and int(out.max()) < K
    # a quarter hidden is where the cosine schedule stands after 6.7 of 8 steps: 2 passes, not 8
    assert len(calls) == 2
    uneven = start.clone()
    uneven[0, 0, 0] = K if uneven[0, 0, 0] != K else 0
    with pytest.raises(ValueError, match="same number"):
        net.generate(4, (6, 6), categorical_picker(1.0, 0, g), 8, 4.5, g, None, uneven)


def test_vary_redraws_the_share_given_the_rest_and_repeats_under_a_seed():
    prior, train = fitted_prior("maskgit", 300, steps=12)
    anchors = train[:32]
    out = prior.vary(anchors, 0.3, seed=2)
    assert out.shape == anchors.shape and out.dtype == torch.int64
    changed = (out != anchors).flatten(1).float().mean(1)
    assert changed.max() <= 11 / 36  # only the hidden share (round(0.3 * 36) = 11) can change
    # the fitted prior fills the hidden codes in keeping with the rest: rows stay one code
    assert (out == out[:, :, :1]).float().mean() > 0.95
    assert torch.equal(out, prior.vary(anchors, 0.3, seed=2))
    assert not torch.equal(prior.vary(anchors, 1.0, seed=3), anchors)  # share 1: new maps
    with pytest.raises(ValueError, match="share"):
        prior.vary(anchors, 0.0)
    with pytest.raises(ValueError, match="shape"):
        prior.vary(anchors[:, :5], 0.5)


def test_only_maskgit_can_vary():
    prior, train = fitted_prior("transformer", 1)
    with pytest.raises(RunError, match="maskgit"):
        prior.vary(train[:2], 0.5)


def test_sample_like_writes_variations_of_given_slices(run_copy, tmp_path, capsys):
    from brainvq.cli import main

    run_path, root = run_copy
    train_prior(str(run_path), ar_prior("maskgit", steps=3), data=str(root), progress=False)
    slices = sorted((root / "keras_png_slices_test").glob("*.png"))[:2]
    out = tmp_path / "var"
    args = ["sample", "--run", str(run_path), "--kind", "maskgit", "-n", "3", "--quiet"]
    rc = main([*args, "--like", *map(str, slices), "--redraw", "0.5", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("variation_*.png")) == [
        f"variation_000{i}.png" for i in range(3)
    ]
    assert (out / "like_pairs.png").exists() and (out / "grid.png").exists()
    assert "3 variations of 2 slice(s)" in capsys.readouterr().out
    assert main([*args, "--redraw", "0.5"]) == 2  # --redraw without --like
    assert "--like" in capsys.readouterr().err
    assert main([*args, "--like", str(tmp_path / "none.png")]) == 2
    assert "no such file" in capsys.readouterr().err


def sharp_net() -> MaskedCodeTransformer:
    """tiny_net with weights spread like a trained net's, so its logits are far from uniform."""
    net = tiny_net()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net


@torch.no_grad()
def plain_generate(net, n, size, pick, steps, noise, generator, start=None, extra=None):
    """MaskedCodeTransformer.generate as first written: one pass over all maps per step, the
    logits of every position, no step shared between maps (the reference the fast path keeps)."""
    t = size[0] * size[1]
    tokens = torch.full((n, t), K) if start is None else start.reshape(n, t).clone()
    n_hidden = int((tokens == K).sum(1)[0])
    first = int(math.floor(steps * 2 / math.pi * math.acos(min(1.0, n_hidden / t))))
    for s in range(min(first, steps - 1), steps):
        hidden = tokens == K
        logits = net._logits(tokens, 0, None, extra)[hidden]
        drawn = pick(logits)
        conf = torch.full((n, t), math.inf)
        conf[hidden] = logits.float().log_softmax(-1).gather(1, drawn[:, None]).squeeze(1)
        tokens[hidden] = drawn
        keep = 0 if s == steps - 1 else int(math.floor(hidden_share((s + 1) / steps) * t))
        keep = max(0, min(keep, n_hidden - 1))
        if keep:
            u = torch.rand(n, t, generator=generator).clamp_(1e-9, 1 - 1e-9)
            conf = conf + noise * (1 - (s + 1) / steps) * -torch.log(-torch.log(u))
            tokens.scatter_(1, conf.topk(keep, dim=1, largest=False).indices, K)
        n_hidden = keep
        if not n_hidden:
            break
    return tokens.reshape(n, *size)


@pytest.mark.parametrize("chunk", [1, 3, 8])
@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, 0), (0.6, 5)])
def test_fast_generate_draws_the_plain_loops_maps(chunk, temperature, top_k):
    """Chunked passes, logits only where hidden and the shared first step change no map."""
    net = sharp_net()

    def draw(fn, start=None):
        g = torch.Generator().manual_seed(11)
        pick = categorical_picker(temperature, top_k, g)
        if fn is plain_generate:
            return plain_generate(net, 7, (6, 6), pick, 5, 4.5, g, start)
        return net.generate(7, (6, 6), pick, 5, 4.5, g, start=start, chunk=chunk)

    new = draw(net.generate)
    assert torch.equal(new, draw(plain_generate))
    assert len(set(new.flatten().tolist())) > 3  # a real draw, not one code everywhere
    start, _ = net.hide(new, torch.Generator().manual_seed(2), share=0.4)  # as Prior.vary
    assert torch.equal(draw(net.generate, start), draw(plain_generate, start))


def test_logits_at_rows_are_the_full_logits_there():
    net = sharp_net()
    tokens = torch.randint(0, K + 1, (3, 36))
    rows = torch.stack([torch.randperm(36)[:10].sort().values for _ in range(3)])
    with torch.no_grad():
        full = net._logits(tokens, 0, None)
        part = net._logits(tokens, 0, None, rows=rows)
    assert part.shape == (3, 10, K)
    assert torch.equal(part, full.gather(1, rows[:, :, None].expand(-1, -1, K)))
