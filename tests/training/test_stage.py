"""The stage runner (brainvq.training.stage): a stage that supplies only its module, data and
save gets reuse, continue, resume, finished.json and its result's words from run_stage."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, TensorDataset

from brainvq.config import TrainConfig
from brainvq.errors import ConfigError, Interrupted
from brainvq.runs import RunDir
from brainvq.training.budget import Budget, read_finished
from brainvq.training.stage import Prepared, Stage, StageResult, StageText, describe, run_stage
from brainvq.training.trainer import stage_config

from ..conftest import TEST_PRECISION

pytestmark = pytest.mark.usefixtures("one_thread")


class LineModule(L.LightningModule):
    """y = w x + b fitted by SGD; ``stop_at``: send Ctrl-C during that batch."""

    def __init__(self, stop_at: int = 0) -> None:
        super().__init__()
        self.net = torch.nn.Linear(1, 1)
        self.stop_at = stop_at

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if self.stop_at and self.global_step + 1 == self.stop_at:
            os.kill(os.getpid(), signal.SIGINT)
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LineStage(Stage):
    """A toy stage: its module, data and save, nothing else."""

    name, section = "line", "train"

    def __init__(
        self, run: RunDir, steps: int, fresh: bool = False, stop_at: int = 0, bad: bool = False
    ) -> None:
        self.run, self.fresh, self.progress = run, fresh, False
        self.weights, self.stop_at, self.bad = run.path / "line.safetensors", stop_at, bad
        self.config = stage_config(TrainConfig(precision=TEST_PRECISION), 4, 1000, steps, 0.0, 0)

    def budget(self) -> Budget:
        return Budget.of(self.config)

    def prepare(self, ckpt: Path | None) -> Prepared:
        if self.bad:  # bad input found while preparing, after writing into the stage's folder
            state = self.run.stage_state(self.name)
            state.mkdir(parents=True, exist_ok=True)
            (state / "half.txt").write_text("from the failed start")
            raise ConfigError("line: a bad setting")
        L.seed_everything(0, verbose=False)
        x = torch.linspace(-1, 1, 16)[:, None]
        loader = DataLoader(TensorDataset(x, 3 * x + 1), batch_size=4, shuffle=True)
        return Prepared(LineModule(self.stop_at), loader, None, self.config, "16 points", ckpt)

    def finish(self, module, trainer, zero: bool) -> dict:
        if zero:
            save_file({k: v.contiguous() for k, v in module.net.state_dict().items()}, self.weights)
        return {"epochs": trainer.current_epoch}

    def text(self, result: StageResult) -> StageText:
        return StageText("line", self.section, line=f"line {result.status}: {{work}}{{ended}}")


def test_a_stage_that_supplies_module_data_and_save_gets_reuse_continue_and_resume(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    first = run_stage(LineStage(run, 5))
    assert (
        first.status == "trained" and first.steps == 5 and first.finished["stopped_by"] == "steps"
    )
    assert read_finished(run, "line")["steps"] == 5 and (tmp_path / "run/line.safetensors").exists()
    assert describe(first).startswith("line trained: 5 steps in ")
    assert describe(first).endswith(", ended by its step budget (train.max_steps = 5)")
    # the same budget: reused, in the runner's words
    again = run_stage(LineStage(run, 5))
    assert again.status == "reused" and again.steps == 5
    assert describe(again) == (
        f"line already trained (5 steps; its step budget (train.max_steps = 5) ended it): "
        f"{tmp_path / 'run/line.safetensors'}; a larger budget continues it, --fresh retrains"
    )
    # a larger budget goes on from the last checkpoint
    before = load_file(tmp_path / "run/line.safetensors")
    more = run_stage(LineStage(run, 8))
    assert more.status == "continued" and more.steps == 8 and more.finished["steps"] == 8
    after = load_file(tmp_path / "run/line.safetensors")
    assert not all(torch.equal(before[k], after[k]) for k in before)
    # --fresh starts over
    assert run_stage(LineStage(run, 8, fresh=True)).status == "trained"


def test_an_interrupted_stage_resumes_and_the_result_reads_like_its_summary_dict(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted):
        run_stage(LineStage(run, 6, stop_at=3))
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is the caller's again
    res = run_stage(LineStage(run, 6))
    assert res.status == "resumed" and res.steps == 6
    # the dict view: the fields and the stage's extras by name, json-ready as a plain dict
    assert res["status"] == "resumed" and res["finished"]["steps"] == 6 and "epochs" in res
    assert res.get("is_global_zero", True) and {**res}["weights"] == res.weights
    assert json.loads(json.dumps(res.as_dict()))["steps"] == 6


def _tree(path: Path) -> dict:
    """Every file under path (or path itself) with its bytes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): p.read_bytes() for p in files}


def test_fresh_with_bad_input_keeps_what_was_trained_and_a_good_fresh_start_replaces_it(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run_stage(LineStage(run, 5))
    (run.logs / "line" / "metrics.csv").write_text("step,loss\n5,0.1\n")  # the stage's log
    kept = [run.path / "line.safetensors", run.stage_state("line"), run.logs / "line"]
    before = {k: v for p in kept for k, v in _tree(p).items()}
    assert {"line/last.ckpt", "line/finished.json", "line/metrics.csv"} <= set(before)
    with pytest.raises(ConfigError, match="a bad setting"):
        run_stage(LineStage(run, 5, fresh=True, bad=True))
    after = {k: v for p in kept for k, v in _tree(p).items()}
    assert after == before  # weights, checkpoint, finished.json and log as they were
    assert not list(run.path.rglob("*.fresh-aside"))
    assert run_stage(LineStage(run, 5)).status == "reused"
    # a fresh start that prepares well: the old state is gone, the new stage trained from zero
    old_ckpt = torch.load(run.stage_state("line") / "last.ckpt", weights_only=True)
    res = run_stage(LineStage(run, 3, fresh=True))
    assert res.status == "trained" and res.steps == 3 and read_finished(run, "line")["steps"] == 3
    new_ckpt = torch.load(run.stage_state("line") / "last.ckpt", weights_only=True)
    assert new_ckpt["global_step"] == 3 < old_ckpt["global_step"]
    assert not list(run.path.rglob("*.fresh-aside"))
