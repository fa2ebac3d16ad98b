"""Progress fitted to where it goes: bars on a terminal; redirected, a few plain lines per long
phase and no carriage returns; nothing with --quiet. Time is a fake clock here, never the real one."""

from __future__ import annotations

import pytest

from brainvq import progress as P
from brainvq.training import callbacks
from brainvq.training.vqvae import train_vqvae

from .conftest import brainvq, tiny, tiny_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(P, "monotonic", fake)
    return fake


def test_redirected_progress_writes_a_line_a_minute_and_none_for_quick_phases(clock, capsys):
    with P.Progress(1000, "encoding", "slice") as bar:  # 1000 s of work, one unit a second
        for _ in range(1000):
            clock.now += 1
            bar.update()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    # the first line once it has run FIRST_LINE_S, then one a minute, then the closing line
    assert len(lines) == 1 + int((1000 - P.FIRST_LINE_S) // P.LINE_EVERY_S) + 1
    assert lines[0].startswith("encoding: 5/1000 slice (0%)") and "left" in lines[0]
    assert lines[-1] == "encoding: 1000/1000 slice, done in 16m40s"

    with P.Progress(1000, "quick", "slice") as bar:  # all done before the first line is due
        bar.update(1000)
    with P.Progress(10, "hidden", "slice", enabled=False) as bar:  # --quiet
        clock.now += 3600
        bar.update(10)
    assert capsys.readouterr().err == ""


def test_an_interrupted_phase_writes_no_done_line(clock, capsys):
    with pytest.raises(KeyboardInterrupt), P.Progress(10, "drawing", "map") as bar:
        clock.now += 10
        bar.update()
        raise KeyboardInterrupt
    assert capsys.readouterr().err.splitlines() == ["drawing: 1/10 map (10%), 10s, ~1m30s left"]


def test_terminal_progress_is_a_bar(monkeypatch, capsys):
    monkeypatch.setattr(P, "stderr_is_terminal", lambda: True)
    with P.Progress(3, "bar", "it") as bar:
        bar.update(3)
    assert "3/3" in capsys.readouterr().err


def test_redirected_training_writes_lines_not_bars(keras_root, tmp_path, monkeypatch, capsys):
    """A training stage with progress on and stderr not a terminal: plain lines; with the first
    line and the interval set to 0, one per batch and per epoch, each with the stage's numbers."""
    monkeypatch.setattr(callbacks, "FIRST_LINE_S", 0.0)
    monkeypatch.setattr(callbacks, "LINE_EVERY_S", 0.0)
    cfg = tiny_config(max_epochs=2)
    res = train_vqvae(str(keras_root), str(tmp_path / "run"), cfg, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("vqvae:")]
    # the stage's precision and its preparation first (brainvq.training.trainer.begin_stage)
    assert lines[0].startswith("vqvae: precision ") and lines[1].startswith("vqvae: preparing ")
    lines = lines[2:]
    assert lines[0] == "vqvae: training (budget: 2 epochs)"
    steps = res["steps"]  # 24 slices / batch 4 = 6 a epoch
    assert len(lines) == 1 + steps + 2 and steps == 12
    assert "epoch 1, step 12" in lines[-1] and "val_ssim" in lines[-1] and "steps/s" in lines[-1]


def test_redirected_cli_run_has_no_carriage_returns_and_few_lines(keras_root, tmp_path):
    """`brainvq train-vqvae` without --quiet, stderr captured (not a terminal)."""
    args = [a for a in tiny("train-vqvae", keras_root, tmp_path / "run") if a != "--quiet"]
    r = brainvq(*args, "--train.max_epochs", "2")
    assert "\r" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("vqvae: ")]
    assert lines[0].startswith("vqvae: precision ") and lines[1].startswith("vqvae: preparing ")
    lines = lines[2:]
    assert lines[0] == "vqvae: training (budget: 2 epochs)"
    # at most one line per batch and per epoch after it, however slow the machine (lines are
    # FIRST_LINE_S, then LINE_EVERY_S apart), where a bar would write one per refresh
    assert len(lines) <= 1 + 12 + 2
