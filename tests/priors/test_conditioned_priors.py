"""Priors conditioned on covariates (prior.conditions): a tiny prior trained on code maps whose
codes depend on a covariate draws maps that follow the covariate asked for; classifier-free
guidance 0 is exactly the unconditioned path and 1 the plain conditioned one; the specs survive
the prior file (brainvq.nn.conditions, brainvq.priors.covariates, brainvq.training.code_prior)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainvq.config import Config
from brainvq.errors import RunError
from brainvq.priors import load_prior_file
from brainvq.priors.covariates import (
    covariate_specs,
    encode,
    outside_range,
    parse_conditions,
    standardise,
)
from brainvq.training.code_prior import CodePredictionModule

pytestmark = pytest.mark.usefixtures("one_thread")

K, SIDE = 8, 4
LOW, HIGH = (0, 1), (6, 7)  # the codes of maps of the one group and of the other


def covariate_data(kind: str, n: int = 256, seed: int = 0):
    """Code maps whose codes are LOW for the first group and HIGH for the second, the raw
    covariate of each map (categorical: level index; continuous: -1 / +1 plus noise), specs."""
    g = torch.Generator().manual_seed(seed)
    group = torch.arange(n) % 2
    pick = torch.randint(0, 2, (n, SIDE, SIDE), generator=g)
    codes = torch.where(group[:, None, None] == 0, LOW[0] + pick, HIGH[0] + pick)
    if kind == "categorical":
        raw = group.numpy().astype(np.float32)[:, None]
        specs = covariate_specs({"group": raw[:, 0]}, {"group": ("categorical", ("a", "b"), "")})
    else:
        raw = (group.numpy() * 2.0 - 1 + np.random.default_rng(seed).normal(0, 0.1, n))[:, None]
        specs = covariate_specs({"size": raw[:, 0]}, {"size": ("continuous", (), "slice")})
    return codes, raw.astype(np.float32), specs


def trained(prior_kind: str, cov_kind: str, steps: int = 150):
    """A tiny prior of prior_kind trained on covariate_data, with condition dropout."""
    torch.manual_seed(0)
    codes, raw, specs = covariate_data(cov_kind)
    cfg = Config()
    cfg.prior.kind = prior_kind
    for section in (cfg.prior.maskgit, cfg.prior.transformer):
        section.dim, section.layers, section.heads = 32, 1, 2
    cfg.prior.maskgit.steps = 4
    module = CodePredictionModule(cfg, torch.randn(K, 4), SIDE, covariates=specs)
    x = torch.from_numpy(standardise(specs, raw))
    opt = torch.optim.Adam(module.prior.parameters(), lr=3e-3)
    module.prior.train()
    for step in range(steps):
        idx = torch.randint(0, len(codes), (32,), generator=torch.Generator().manual_seed(step))
        c, cond = module._unpack((codes[idx], x[idx], x[idx], x[idx]), training=True)
        loss = module.prior.loss(c, **cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return module.prior.eval(), specs, cfg


def share_in(maps: torch.Tensor, codes: tuple[int, int]) -> float:
    return float(((maps == codes[0]) | (maps == codes[1])).float().mean())


@pytest.mark.parametrize("prior_kind", ["maskgit", "transformer"])
@pytest.mark.parametrize("cov_kind", ["categorical", "continuous"])
def test_a_conditioned_prior_draws_what_is_asked(prior_kind, cov_kind):
    prior, specs, _ = trained(prior_kind, cov_kind)
    name = specs[0]["name"]
    first, second = ("a", "b") if cov_kind == "categorical" else (-1.0, 1.0)
    low = prior.sample(48, seed=1, covariates={name: first})
    high = prior.sample(48, seed=1, covariates={name: second})
    # each follows its condition; a prior that dropped the condition draws both groups alike
    assert share_in(low, LOW) > 0.9 and share_in(high, HIGH) > 0.9
    free = prior.sample(96, seed=2)  # unconditioned (trained with condition dropout): both
    low_maps = ((free <= LOW[1]).float().mean((1, 2)) > 0.5).sum()
    assert 3 <= low_maps <= 93


@pytest.mark.parametrize("prior_kind", ["maskgit", "transformer"])
def test_guidance_zero_is_the_unconditioned_path_and_one_the_conditioned(prior_kind):
    prior, specs, _ = trained(prior_kind, "categorical", steps=30)
    asked = {"group": "a"}
    free = prior.sample(12, seed=3)
    assert torch.equal(prior.sample(12, seed=3, covariates=asked, guidance=0.0), free)
    plain = prior.sample(12, seed=3, covariates=asked)
    assert torch.equal(prior.sample(12, seed=3, covariates=asked, guidance=1.0), plain)
    guided = prior.sample(12, seed=3, covariates=asked, guidance=3.0)
    assert guided.shape == plain.shape and int(guided.max()) < K
    assert not torch.equal(guided, plain)  # the guided path is a path of its own


def test_guided_logits_mix_the_two_passes():
    prior, _, _ = trained("maskgit", "categorical", steps=5)
    net = prior.net
    x = encode(prior.covariates, {"group": "b"}, 3)
    tokens = torch.full((3, SIDE * SIDE), net.mask_token)
    guide = net.guide(3, covariates=x, guidance=2.5)
    with torch.no_grad():
        mixed = net._guided(tokens, 0, None, guide)
        c = net._logits(tokens, 0, None, net.condition(3, covariates=x))
        u = net._logits(tokens, 0, None, net.condition(3))
    torch.testing.assert_close(mixed, u + 2.5 * (c - u), atol=1e-5, rtol=1e-5)


def test_covariate_specs_survive_the_prior_file(tmp_path):
    prior, specs, cfg = trained("maskgit", "continuous", steps=5)
    prior.save(tmp_path / "prior-maskgit.safetensors", cfg)
    back = load_prior_file(tmp_path / "prior-maskgit.safetensors")
    assert back.covariates == specs and back.covariates[0]["per"] == "slice"
    asked = {"size": 0.5}
    same = back.sample(4, seed=0, covariates=asked)
    assert torch.equal(same, prior.sample(4, seed=0, covariates=asked))


def test_asked_values_are_checked_in_one_line():
    _, raw, specs = covariate_data("categorical")
    for asked, says in [
        ({"age": 3}, "trained on conditions group"),
        ({"group": "c"}, "ask for one of a, b"),
    ]:
        with pytest.raises(RunError, match=says) as e:
            encode(specs, asked, 2, "P.safetensors")
        assert "\n" not in str(e.value)
    cont = covariate_specs({"size": np.array([1.0, 3.0])}, {"size": ("continuous", (), "")})
    with pytest.raises(RunError, match="takes a number"):
        encode(cont, {"size": "big"}, 2)
    assert encode(cont, {"size": 3.0}, 2).tolist() == [[1.0], [1.0]]  # (3 - mean 2) / std 1
    assert outside_range(cont, {"size": "2"}) == []
    assert "outside the training slices' range 1 .. 3" in outside_range(cont, {"size": "5"})[0]
    assert parse_conditions(["cdr=1", " ventricle_fraction = 0.06"]) == {
        "cdr": "1",
        "ventricle_fraction": "0.06",
    }
    for bad in (["cdr"], ["=1"], ["cdr="], ["cdr=1", "cdr=2"]):
        with pytest.raises(RunError, match="--condition"):
            parse_conditions(bad)


# -- through a run folder and the command line ------------------------------------------------------
def data_with_table(root, tmp_path):
    """A copy of the tiny run's data with subjects.csv: a categorical `group` (a, b by subject)."""
    import shutil

    from brainvq import data as D
    from brainvq.config import DataConfig

    data = tmp_path / "data"
    shutil.copytree(root, data)
    splits = D.discover(data, DataConfig())
    subjects = sorted({s for v in splits.subjects.values() for s in v})
    rows = [f"{s},{'ab'[i % 2]}" for i, s in enumerate(subjects)]
    (data / "subjects.csv").write_text("subject,group\n" + "\n".join(rows) + "\n")
    return data


def test_train_and_sample_on_request_through_the_command_line(run_copy, tmp_path, capsys):
    import csv

    from brainvq.cli import main

    from .test_priors import ar_prior

    run_path, root = run_copy
    data = data_with_table(root, tmp_path)
    cfg = ar_prior("maskgit", steps=3)
    cfg.prior.conditions = ["group", "ventricle_fraction"]
    from brainvq.training.prior import describe, train_prior

    out = train_prior(str(run_path), cfg.validate(), data=str(data), progress=False)
    assert out["covariates"] == ["group", "ventricle_fraction"]
    assert "on group, ventricle_fraction" in describe(out)
    run = ["sample", "--run", str(run_path), "--data", str(data), "--kind", "maskgit", "--quiet"]
    folder = tmp_path / "asked"
    asked = ["--condition", "group=b", "--condition", "ventricle_fraction=0.05"]
    rc = main([*run, "-n", "3", *asked, "--guidance", "2", "--out", str(folder)])
    assert rc == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "group=b, ventricle_fraction=0.05 (guidance 2)" in said and "measured" in said
    rows = list(csv.DictReader((folder / "manifest.csv").open()))
    assert len(rows) == 3 and rows[0]["asked_group"] == "b" and rows[0]["guidance"] == "2.0"
    assert rows[0]["asked_ventricle_fraction"] == "0.05"
    assert all(0 <= float(r["measured_ventricle_fraction"]) < 1 for r in rows)
    # a condition the prior was not trained on, a malformed one, an unknown level: one line, 2
    for bad, says in [
        (["--condition", "age=70"], "trained on conditions group, ventricle_fraction"),
        (["--condition", "group"], "NAME=VALUE"),
        (["--condition", "group=c"], "one of a, b"),
        (["--guidance", "2"], "only with --condition"),
    ]:
        assert main([*run, "-n", "2", *bad, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err


def test_a_prior_without_conditions_still_samples_and_refuses_them(run_copy, tmp_path, capsys):
    from brainvq.cli import main
    from brainvq.training.prior import train_prior

    from .test_priors import ar_prior

    run_path, root = run_copy
    train_prior(str(run_path), ar_prior("transformer"), data=str(root), progress=False)
    run = ["sample", "--run", str(run_path), "--kind", "transformer", "--quiet", "-n", "2"]
    assert main([*run, "--out", str(tmp_path / "plain")]) == 0, capsys.readouterr().err
    assert main([*run, "--condition", "cdr=1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "trained without conditions" in err and "--prior.conditions cdr" in err


def test_conditions_the_data_lacks_or_the_kind_cannot_take_are_refused(run_copy, tmp_path):
    from brainvq.errors import ConfigError
    from brainvq.training.prior import train_prior

    from .test_priors import ar_prior

    run_path, root = run_copy
    data = data_with_table(root, tmp_path)
    for kind, names, says in [
        ("maskgit", ["age"], "'age' is no covariate of .* group, brain_fraction"),
        ("pixelcnn", ["group"], "a pixelcnn prior takes no covariates"),
    ]:
        cfg = ar_prior(kind)
        cfg.prior.conditions = names
        with pytest.raises(ConfigError, match=says):
            train_prior(str(run_path), cfg, data=str(data), progress=False)


def test_a_prior_of_other_conditions_is_not_reused_without_fresh(run_copy, tmp_path):
    from brainvq.training.prior import train_prior

    from .test_priors import ar_prior

    run_path, root = run_copy
    data = data_with_table(root, tmp_path)
    cfg = ar_prior("maskgit", steps=2)
    train_prior(str(run_path), cfg, data=str(data), progress=False)
    cfg.prior.conditions = ["group"]
    with pytest.raises(RunError, match="trained on conditions none.*--fresh"):
        train_prior(str(run_path), cfg, data=str(data), progress=False)
    out = train_prior(str(run_path), cfg, data=str(data), fresh=True, progress=False)
    assert out["status"] == "trained" and out["covariates"] == ["group"]
