"""One stage's skeleton, written once: reuse, continue or resume, prepare, fit, save, result.

The VQ-VAE (training/vqvae.py), prior (training/prior.py) and decoder-tuning
(training/decoder.py) stages are each a ``Stage``: they name their folder, budget and weights,
say whether a finished result is reused, prepare their module and data (seeding first, so the
same seed gives the same weights), and save what they trained. ``run_stage`` does the rest, the
same way for all three:

1. start the clock (the stage's preparation is shown on a line of its own and not counted in its
   minutes cap, brainvq.training.budget);
2. ``Stage.decide``: reuse a finished result (a ``StageResult`` with status "reused"), or go on;
   a finished stage given a larger budget is "continued" from its last checkpoint;
3. RUN/state/STAGE/last.ckpt (``resume_path``): an unfinished stage resumes there, after Ctrl-C
   or a crash; --fresh starts over (``fresh_start``: the old weights, state and logs are removed
   once step 4 succeeded, and kept if it failed);
4. ``Stage.prepare``: data, seed, module, loaders;
5. the precision (train.precision auto measures each stage's own model, training/precision.py)
   and the preparation's line (``begin_stage``), the Trainer (``make_trainer``), and the fit
   (``fit_stage``: Ctrl-C, non-finite losses, BudgetTooSmall, SIGINT restored, finished.json);
6. ``Stage.finish``: save on rank 0 and say what the stage measured (extras).

The result is a ``StageResult``: status, steps, seconds, how the stage ended (its finished.json),
the weights' path and the stage's extras; it reads like the dict the stages used to return
(``result["val_ssim"]``, ``result.get("is_global_zero", True)``, ``{**result}``), and
``describe`` turns it into the stage's console lines.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from brainvq.config import TrainConfig
from brainvq.runs import RunDir
from brainvq.training.budget import Budget, can_continue, read_finished, stop_text
from brainvq.training.trainer import begin_stage, fit_stage, is_rank_zero, make_trainer, resume_path


@dataclass
class StageText:
    """How ``describe`` words a stage's result: ``title`` ("VQ-VAE", "maskgit prior"), the verb
    of a finished stage ("trained", "done") and of --fresh ("retrains"), the config ``section``
    that names its budget, ``notes`` (lines said before the summary), ``line`` (the summary of a
    stage that ran; "{work}" becomes "N steps in Ss", "{ended}" ", ended by LIMIT") and whether
    a reused result names its weights."""

    title: str
    section: str
    verb: str = "trained"
    redo: str = "retrains"
    notes: tuple[str, ...] = ()
    line: str = ""
    show_weights: bool = True


@dataclass(eq=False)
class StageResult(Mapping):
    """What a stage did: ``status`` (trained, resumed, continued, retrained, tuned, judged or
    reused), ``steps``, ``seconds`` (the whole call), ``finished`` (how it ended: its
    finished.json record, None for a reused result from an older brainvq), ``weights`` (the file
    it wrote or reused), ``is_global_zero`` (False in the other processes of a DDP run) and the
    stage's ``extras``. As a Mapping it is the stage's summary dict (these fields and the extras
    by name)."""

    status: str
    weights: str
    text: StageText | None = field(repr=False)  # set by the stage (Stage.text)
    steps: int | None = None
    seconds: float | None = None
    finished: dict | None = None
    is_global_zero: bool = True
    extras: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The summary as a plain dict (json.dumps takes it)."""
        out = {"status": self.status, "steps": self.steps, "seconds": self.seconds}
        out |= {"finished": self.finished, "weights": self.weights}
        return out | {"is_global_zero": self.is_global_zero, **self.extras}

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())


def describe(result: StageResult, notes: bool = True) -> str:
    """What a stage did, in the stage's words: its notes (``notes=False`` leaves them out), then
    one line on the result and which limit of its budget ended it."""
    t, finished = result.text, result.finished
    head = list(t.notes) if notes else []
    if result.status == "reused":
        done = ""
        if finished:
            done = f" ({finished['steps']} steps; {stop_text(finished, t.section)} ended it)"
        where = f": {result.weights}" if t.show_weights else ""
        line = (
            f"{t.title} already {t.verb}{done}{where}; a larger budget continues it, --fresh "
            f"{t.redo}"
        )
    else:
        ended = f", ended by {stop_text(finished, t.section)}" if finished else ""
        work = f"{result.steps} steps in {result.seconds:.0f}s"
        line = t.line.replace("{work}", work).replace("{ended}", ended)
    return "\n".join([*head, line])


@dataclass
class Prepared:
    """What ``Stage.prepare`` hands the runner: the module and its loaders, the stage's
    TrainConfig (budget, seed, precision), what the preparation did (in words), the checkpoint to
    resume from (the runner's, or None where preparing wiped the stage's state) and, for a stage
    that already trained and only has its weights left to save or judge, ``done`` (its
    finished.json record: no fit)."""

    module: L.LightningModule
    train: Any
    val: Any
    config: TrainConfig
    what: str
    ckpt: Path | None
    done: dict | None = None


class Stage:
    """One stage of a run as ``run_stage`` drives it; the VQ-VAE, prior and decoder stages
    subclass it and supply their ``budget``, ``prepare`` (data and module), ``finish`` (the save),
    ``text`` (their words) and, where the default does not fit, ``decide``."""

    name: str  # its folder under RUN/state and RUN/logs: "vqvae", "prior-maskgit"
    section: str  # the config section that names its budget in messages: "train", "prior"
    run: RunDir
    weights: Path
    fresh: bool = False
    progress: bool = True
    status: str = "trained"  # before resuming: "trained", or what decide found
    updates_per_step: int = 1  # optimizer steps per stage step (2 for a GAN)
    unused_parameters: bool = False  # DDP: parameters some steps leave out of the loss
    barrier: str | None = None  # DDP: the other ranks wait here for rank 0's save
    started: float = 0.0

    def text(self, result: StageResult) -> StageText:
        """The stage's wording of ``result`` for ``describe``."""
        raise NotImplementedError

    def budget(self) -> Budget:
        """The budget the stage is asked to keep (compared with the one it finished under)."""
        raise NotImplementedError

    def decide(self) -> StageResult | None:
        """A reused result, or None to train: a finished stage whose weights exist is reused
        unless --fresh or a larger budget (then it is "continued")."""
        if not self.fresh and self.weights.exists():
            if not can_continue(self.run, self.name, self.budget()):
                return self.reused()
            self.status = "continued"
        return None

    def reused(self, **extras) -> StageResult:
        """The result of a stage that is not trained again."""
        finished = read_finished(self.run, self.name)
        steps = finished["steps"] if finished else None
        seconds = round(time.monotonic() - self.started, 1)
        result = StageResult("reused", str(self.weights), None, steps, seconds, finished, True)
        result.extras = extras
        result.text = self.text(result)
        return result

    def prepare(self, ckpt: Path | None) -> Prepared:
        """Load the data, seed, build the module and its loaders."""
        raise NotImplementedError

    def ready(self, module: L.LightningModule) -> None:
        """After the precision is chosen, before the Trainer (the VQ-VAE compiles here)."""

    def resumed_status(self, ckpt: Path | None) -> str:
        """The status of a stage that trains: "resumed" from an unfinished checkpoint."""
        return "resumed" if ckpt is not None and self.status == "trained" else self.status

    def finish(self, module: L.LightningModule, trainer: L.Trainer | None, zero: bool) -> dict:
        """Save what the stage trained (on rank 0, ``zero``) and return its extras; ``trainer``
        is None where it did not fit (Prepared.done)."""
        raise NotImplementedError


def run_stage(stage: Stage) -> StageResult:
    """Run ``stage``: reuse, or prepare, fit (resuming where it stopped) and save (see the
    module docstring)."""
    stage.started = time.monotonic()
    reused = stage.decide()
    if reused is not None:
        return reused
    if stage.fresh:
        with fresh_start(stage):
            prep = stage.prepare(None)
    else:
        prep = stage.prepare(resume_path(stage.run, stage.name))
    status, trainer, zero = stage.resumed_status(prep.ckpt), None, True
    finished = prep.done
    if finished is None:
        trainer, finished = _fit(stage, prep)
        zero = trainer.is_global_zero
    extras = stage.finish(prep.module, trainer, zero)
    if trainer is not None and stage.barrier:
        trainer.strategy.barrier(stage.barrier)
    seconds = round(time.monotonic() - stage.started, 1)
    result = StageResult(status, str(stage.weights), None, finished["steps"], seconds, finished)
    result.is_global_zero, result.extras = zero, extras
    result.text = stage.text(result)
    return result


ASIDE = ".fresh-aside"  # suffix of what --fresh set aside while the stage prepares


@contextmanager
def fresh_start(stage: Stage) -> Iterator[None]:
    """--fresh: the stage's weights, state and logs are set aside (renamed) while it loads its
    data and checks its settings; removed once that succeeded, put back if it failed, so a typo
    in a --fresh command costs nothing trained. Rank 0 alone touches the files."""
    if not is_rank_zero():
        yield
        return
    run = stage.run
    moved = []
    for path in (stage.weights, run.stage_state(stage.name), run.logs / stage.name):
        aside = path.with_name(path.name + ASIDE)
        _remove(aside)  # left by a command killed while it prepared
        if path.exists():
            path.rename(aside)
            moved.append((path, aside))
    try:
        yield
    except BaseException:
        for path, aside in moved:
            _remove(path)  # whatever the failed preparation wrote there
            aside.rename(path)
        raise
    for _, aside in moved:
        _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fit(stage: Stage, prep: Prepared) -> tuple[L.Trainer, dict]:
    """Precision, Trainer, fit: the trainer and how the stage ended (its finished.json)."""
    t, section = prep.config, stage.section
    prepared = time.monotonic() - stage.started, prep.what
    choice = begin_stage(
        stage.name, t, prep.module, prep.train, section, prepared, stage.updates_per_step,
        stage.progress,
    )  # fmt: skip
    stage.ready(prep.module)
    trainer = make_trainer(
        stage.run, stage.name, t, stage.progress, unused_parameters=stage.unused_parameters,
        updates_per_step=stage.updates_per_step, precision=choice, section=section,
        prepared_seconds=prepared[0],
    )  # fmt: skip
    finished = fit_stage(
        trainer, prep.module, prep.train, prep.val, prep.ckpt, stage.run, stage.name
    )
    return trainer, finished
