"""`train.precision auto`, measured: the choice, its cache, the stage's first line, what the run
records, and that measuring leaves the stage's weights as they would have been; the suite's
configs state their precision, and a bf16 VQ-VAE stage trains on a CPU with BF16 (the one test
here that depends on the CPU's flags, and it skips without them)."""

from __future__ import annotations

import csv
import json
import tomllib

import pytest
import torch
from safetensors.torch import load_file

from brainvq.config import Config
from brainvq.runs import RunDir
from brainvq.training import precision
from brainvq.training.budget import read_finished
from brainvq.training.hardware import cpu_has_bf16
from brainvq.training.precision import choose_precision
from brainvq.training.vqvae import train_vqvae

from ..conftest import TEST_PRECISION, TINY_OVERRIDES, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeTimer:
    """Seconds per step by precision, and which precisions were timed."""

    def __init__(self, fp32: float, bf16: float) -> None:
        self.seconds = {"32-true": fp32, "bf16-mixed": bf16}
        self.calls: list[str] = []

    def __call__(self, p: str) -> float:
        self.calls.append(p)
        return self.seconds[p]


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU with BF16, whatever this one has."""
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)


def test_auto_takes_bf16_only_where_measured_clearly_faster(bf16_cpu):
    fast = FakeTimer(fp32=1.0, bf16=0.5)
    got = choose_precision("auto", "cpu", "vqvae|a", fast)
    assert got.precision == "bf16-mixed" and fast.calls == ["32-true", "bf16-mixed"]
    assert "measured 2.00x faster than fp32" in got.reason
    slow = FakeTimer(fp32=1.0, bf16=2.5)
    got = choose_precision("auto", "cpu", "vqvae|b", slow)
    assert got.precision == "32-true" and "bf16 measured 0.40x" in got.reason
    barely = FakeTimer(fp32=1.0, bf16=0.95)  # 1.05x: not a clear margin
    assert choose_precision("auto", "cpu", "vqvae|c", barely).precision == "32-true"


def test_a_second_run_reads_the_choice_from_the_cache(bf16_cpu, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    first = FakeTimer(fp32=1.0, bf16=0.5)
    choose_precision("auto", "cpu", "prior-maskgit|x", first)
    again = FakeTimer(fp32=1.0, bf16=5.0)  # would say fp32, were it asked
    got = choose_precision("auto", "cpu", "prior-maskgit|x", again)
    assert again.calls == [] and got.precision == "bf16-mixed" and got.reason.endswith("cached")
    cached = json.loads((tmp_path / "cache" / "precision.json").read_text())
    (key,) = cached
    assert key.endswith("prior-maskgit|x") and "torch" in key  # per machine, torch and shape
    other = FakeTimer(fp32=1.0, bf16=5.0)  # another model shape is measured anew
    assert choose_precision("auto", "cpu", "prior-maskgit|y", other).precision == "32-true"
    assert other.calls == ["32-true", "bf16-mixed"]


def test_no_bf16_or_an_explicit_precision_times_nothing(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    timer = FakeTimer(fp32=1.0, bf16=0.1)
    got = choose_precision("auto", "cpu", "vqvae|a", timer)
    assert got.precision == "32-true" and got.reason == "auto: no BF16 on this CPU"
    assert choose_precision("bf16", "cpu", "vqvae|a", timer).precision == "bf16-mixed"
    assert timer.calls == []


def test_the_stage_says_its_precision_first_and_the_run_records_it(
    keras_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    cfg = tiny_config(max_epochs=1, precision="auto")
    train_vqvae(str(keras_root), str(tmp_path / "run"), cfg, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "vqvae: precision fp32 (auto: no BF16 on this CPU)"
    assert lines[1].startswith("vqvae: preparing 24 training slices took ")
    assert lines[1].endswith("(not counted in train.max_minutes)")
    run = RunDir(tmp_path / "run")
    finished = read_finished(run, "vqvae")
    assert finished["precision_used"] == "32-true"
    assert finished["precision_reason"] == "auto: no BF16 on this CPU"
    assert "prepare_seconds" in finished
    asked = tomllib.loads(run.config.read_text())["train"]["precision"]
    assert asked == "auto"  # what the user asked; finished.json says what it became


def test_measuring_leaves_the_stages_weights_as_without_it(
    bf16_cpu, keras_root, tmp_path, monkeypatch
):
    """auto on a BF16 CPU times both precisions on a copy, then (bf16 never clearly faster here)
    trains in fp32: the weights are those of a run asked for fp32, seed for seed."""
    monkeypatch.setattr(precision, "MARGIN", float("inf"))
    timed = []
    real = precision.time_steps
    monkeypatch.setattr(
        precision, "time_steps", lambda *a, **k: timed.append(a[2]) or real(*a, **k)
    )
    weights = []
    for asked in ("auto", "32"):
        cfg = tiny_config(max_epochs=2, precision=asked)
        train_vqvae(str(keras_root), str(tmp_path / asked), cfg, progress=False)
        weights.append(load_file(str(tmp_path / asked / "vqvae.safetensors")))
        assert read_finished(RunDir(tmp_path / asked), "vqvae")["precision_used"] == "32-true"
    assert timed == ["32-true", "bf16-mixed"]  # the auto run did measure
    a, b = weights
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_tiny_configs_state_the_suites_precision():
    assert Config().train.precision == "auto"  # what a user gets: the tests must not inherit it
    assert tiny_config().train.precision == TEST_PRECISION
    i = TINY_OVERRIDES.index("--train.precision")
    assert TINY_OVERRIDES[i + 1] == TEST_PRECISION
    assert tiny_config(precision="bf16").train.precision == "bf16"  # a test may state its own


@pytest.mark.skipif(not cpu_has_bf16(), reason="the CPU has no BF16 (AVX512-BF16 or AMX)")
def test_a_bf16_vqvae_stage_trains_under_bf16_autocast_and_lowers_its_loss(
    keras_root, tmp_path, monkeypatch
):
    from brainvq.training import vqvae

    seen = []
    step = vqvae.VQVAEModule.training_step

    def spy(self, batch, batch_idx):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(vqvae.VQVAEModule, "training_step", spy)
    cfg = tiny_config(max_epochs=1000, max_steps=60, precision="bf16", accelerator="cpu")
    vqvae.train_vqvae(str(keras_root), str(tmp_path / "run"), cfg, progress=False)
    assert len(seen) == 60 and set(seen) == {(True, torch.bfloat16)}
    with (tmp_path / "run" / "logs" / "vqvae" / "metrics.csv").open() as f:
        losses = [float(r["loss_step"]) for r in csv.DictReader(f) if r.get("loss_step")]
    assert len(losses) == 60 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
