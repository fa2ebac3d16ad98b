"""Budgets in steps, with minutes as a cap: a step budget ends a stage at that step on any machine;
the minutes cap counts training, not the stage's preparation, and must fit the steps a stage
needs; a finished stage given a larger budget goes on."""

import os
import time

import pytest
import torch
from safetensors.torch import load_file

from brainvq.errors import BudgetTooSmall
from brainvq.runs import RunDir
from brainvq.training import vqvae as vqvae_module
from brainvq.training.budget import Budget, read_finished
from brainvq.training.prior import describe as describe_prior
from brainvq.training.prior import train_prior
from brainvq.training.vqvae import describe, train_vqvae

from ..conftest import tiny_config


class SlowClock:
    """time.monotonic of a machine that is `factor` times slower: each reading advances the
    clock by `tick` seconds more than real time did."""

    def __init__(self, tick: float) -> None:
        self.real, self.tick, self.extra = time.monotonic, tick, 0.0

    def __call__(self) -> float:
        self.extra += self.tick
        return self.real() + self.extra


def _weights(path) -> dict:
    return {k: v.clone() for k, v in load_file(str(path)).items()}


def test_step_budget_ends_the_stage_at_that_step_whatever_the_machines_speed(
    keras_root, tmp_path, monkeypatch
):
    cfg = tiny_config(max_epochs=100, max_steps=7, max_minutes=600.0)
    fast = train_vqvae(str(keras_root), str(tmp_path / "fast"), cfg, progress=False)
    # a machine so slow that every clock reading is 30 s later: rolling checkpoints are written
    # every few batches, the minutes cap (10 hours) is not reached
    monkeypatch.setattr(time, "monotonic", SlowClock(30.0))
    slow = train_vqvae(str(keras_root), str(tmp_path / "slow"), cfg, progress=False)
    for res in (fast, slow):
        assert res["steps"] == 7 and res["finished"]["stopped_by"] == "steps"
        assert "its step budget (train.max_steps = 7)" in describe(res)
    assert slow["finished"]["seconds"] > 600  # the slow machine did take longer...
    a, b = _weights(tmp_path / "fast" / "vqvae.safetensors"), _weights(slow["weights"])
    assert all(torch.equal(a[k], b[k]) for k in a)  # ...and made the same weights


def test_minutes_cap_does_not_count_the_stages_preparation(keras_root, tmp_path, monkeypatch):
    clock = SlowClock(0.0)
    monkeypatch.setattr(time, "monotonic", clock)
    real_load = vqvae_module.load_data

    def slow_load(*args, **kwargs):  # decoding the slices takes 2 minutes on this machine
        clock.extra += 120
        return real_load(*args, **kwargs)

    monkeypatch.setattr(vqvae_module, "load_data", slow_load)
    cfg = tiny_config(max_epochs=100, max_steps=50, max_minutes=1.0, precision="32")
    res = train_vqvae(str(keras_root), str(tmp_path / "run"), cfg, progress=False)
    # the 2 minutes of preparation are shown apart; the minute of training was not spent on them
    assert res["steps"] == 50 and res["finished"]["stopped_by"] == "steps"
    assert res["finished"]["prepare_seconds"] >= 120 and res["finished"]["seconds"] < 60


def test_a_minutes_cap_that_cannot_fit_the_steps_a_stage_needs_is_refused(
    keras_root, tmp_path, monkeypatch
):
    # every clock reading 30 s later: 1 minute fits about 2 steps, the stage needs one epoch (6)
    monkeypatch.setattr(time, "monotonic", SlowClock(30.0))
    cfg = tiny_config(max_epochs=100, max_steps=0, max_minutes=1.0, precision="32")
    with pytest.raises(BudgetTooSmall, match=r"train\.max_minutes = 1 fits about \d+ steps") as e:
        train_vqvae(str(keras_root), str(tmp_path / "run"), cfg, progress=False)
    assert "raise train.max_minutes or set train.max_steps" in str(e.value)
    assert len(str(e.value).splitlines()) == 1
    run = RunDir(tmp_path / "run")  # no stage result, no state to resume from
    assert read_finished(run, "vqvae") is None and not run.vqvae.exists()
    assert not (run.stage_state("vqvae") / "last.ckpt").exists()
    # a step budget is never refused for minutes, however slow the machine
    cfg = tiny_config(max_epochs=100, max_steps=8, max_minutes=1.0, precision="32")
    res = train_vqvae(str(keras_root), str(tmp_path / "run"), cfg, progress=False)
    assert res["steps"] >= 1 and read_finished(run, "vqvae") is not None


def test_a_larger_budget_continues_a_finished_stage_and_a_smaller_one_reuses_it(
    keras_root, tmp_path
):
    run = tmp_path / "run"

    def train(**budget):
        cfg = tiny_config(**{"max_epochs": 100, **budget})
        return train_vqvae(str(keras_root), str(run), cfg, progress=False)

    assert train(max_steps=5)["status"] == "trained"
    for again in (5, 3):  # the same or a smaller budget: reused, saying where it ended
        res = train(max_steps=again)
        assert res["status"] == "reused" and res["finished"]["steps"] == 5
        assert "already trained (5 steps; its step budget" in describe(res)
    res = train(max_steps=9)
    assert res["status"] == "continued" and res["steps"] == 9
    assert read_finished(RunDir(run), "vqvae")["steps"] == 9
    # epochs and minutes are budgets too: a stage ended by its epochs goes on with more epochs
    assert train(max_steps=0, max_epochs=2)["status"] == "reused"  # 9 steps = 2 epochs already
    res = train(max_steps=0, max_epochs=3)
    assert res["status"] == "continued" and res["finished"]["stopped_by"] == "epochs"
    assert res["epochs"] == 3


def test_budget_allows_more_only_beyond_every_limit():
    done = {"budget": {"loss_threshold": 0.0}, "steps": 10, "epochs": 2, "seconds": 70.0}
    assert Budget(max_steps=11, max_epochs=5).allows_more(done)
    assert not Budget(max_steps=10, max_epochs=5).allows_more(done)
    assert not Budget(max_steps=20, max_epochs=2).allows_more(done)
    assert Budget(max_steps=0, max_epochs=5, max_minutes=2).allows_more(done)
    assert not Budget(max_steps=0, max_epochs=5, max_minutes=1).allows_more(done)
    by_loss = {**done, "stopped_by": "loss_threshold", "budget": {"loss_threshold": 0.1}}
    assert not Budget(max_epochs=5, loss_threshold=0.1).allows_more(by_loss)
    assert Budget(max_epochs=5, loss_threshold=0.05).allows_more(by_loss)


def _prior_cfg(kind: str, **budget):
    cfg = tiny_config()
    p = cfg.prior
    p.kind, p.batch_size, p.max_epochs, p.max_minutes = kind, 4, 100, 0.0
    p.dcgan.latent_dim, p.dcgan.g_channels, p.dcgan.d_channels = 8, 16, 8
    p.dcgan.steps_per_epoch = 4
    p.maskgit.dim, p.maskgit.layers, p.maskgit.heads = 16, 1, 2
    for k, v in budget.items():
        setattr(p, k, v)
    return cfg.validate()


def test_a_dcgan_step_is_one_discriminator_and_one_generator_update(run_copy):
    run, _ = run_copy
    res = train_prior(str(run), _prior_cfg("dcgan", max_steps=3), "dcgan", progress=False)
    assert res["steps"] == 3 and res["finished"]["stopped_by"] == "steps"
    ckpt = torch.load(run / "state" / "prior-dcgan" / "last.ckpt", weights_only=True)
    adam_steps = [int(opt["state"][0]["step"]) for opt in ckpt["optimizer_states"]]
    assert adam_steps == [3, 3]  # generator and discriminator: 3 updates each
    assert "its step budget (prior.max_steps = 3)" in describe_prior(res)


def test_prior_goes_on_with_a_larger_budget_and_starts_over_when_the_vqvae_changed(
    run_copy, keras_root
):
    run, root = run_copy
    first = train_prior(str(run), _prior_cfg("maskgit", max_steps=4), "maskgit", progress=False)
    assert first["status"] == "trained" and first["steps"] == 4
    same = train_prior(str(run), _prior_cfg("maskgit", max_steps=4), "maskgit", progress=False)
    assert same["status"] == "reused"
    more = train_prior(str(run), _prior_cfg("maskgit", max_steps=7), "maskgit", progress=False)
    assert more["status"] == "continued" and more["steps"] == 7
    # the VQ-VAE goes on too: the prior's code maps are gone, so it is trained anew
    cfg = tiny_config(max_epochs=3)
    assert train_vqvae(str(root), str(run), cfg, progress=False)["status"] == "continued"
    again = train_prior(str(run), _prior_cfg("maskgit", max_steps=7), "maskgit", progress=False)
    assert again["status"] == "retrained" and again["steps"] == 7


def test_a_copied_run_keeps_its_prior_whatever_its_file_times(run_copy):
    """A prior is stale when its codebook is not the VQ-VAE's, not when its file is older: a run
    folder copied without its file times (cp -r, an upload) must not retrain its prior."""
    run, _ = run_copy
    cfg = _prior_cfg("maskgit", max_steps=3)
    assert train_prior(str(run), cfg, "maskgit", progress=False)["status"] == "trained"
    last = run / "state" / "prior-maskgit" / "last.ckpt"
    newer = run / "vqvae.safetensors"
    stamp = max(p.stat().st_mtime_ns for p in (last, run / "prior-maskgit.safetensors"))
    os.utime(newer, ns=(stamp + 10**9, stamp + 10**9))  # as a copy may leave them
    again = train_prior(str(run), cfg, "maskgit", progress=False)
    assert again["status"] == "reused"


@pytest.mark.parametrize("command", ["train-vqvae", "train-prior", "tune-decoder", "run"])
def test_cli_budget_flags_set_the_commands_own_stages(command):
    from brainvq.cli import build_parser, load_config

    extra = ["--data", "d"] if command in ("train-vqvae",) else []
    args = build_parser().parse_args(
        [command, "--run", "r", *extra, "--max-steps", "12", "--max-minutes", "1.5"]
    )
    cfg = load_config(args, [])
    sections = {
        "train-vqvae": ["train"],
        "train-prior": ["prior"],
        "tune-decoder": ["tune"],
        "run": ["train", "prior", "tune"],  # the default config tunes
    }[command]
    for name in ("train", "prior", "tune"):
        section = getattr(cfg, name)
        assert (section.max_steps == 12) == (name in sections), (command, name)
        assert (section.max_minutes == 1.5) == (name in sections), (command, name)
    quick = build_parser().parse_args(
        ["run", "--run", "r", "--config", "quick", "--max-steps", "3"]
    )
    assert load_config(quick, []).tune.max_steps == 0  # the quick preset does not tune
