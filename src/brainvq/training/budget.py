"""A stage's budget: steps, epochs, minutes of training and a loss threshold.

A stage ends at whichever limit of its ``Budget`` comes first. Steps are counted as the user counts
them (a DCGAN step is one discriminator and one generator update) and end a stage at that step
whatever the machine's speed, so the same seed gives the same weights on a busy machine and an idle
one; the minutes cap (``StageBudget``) is the one limit that depends on speed: it counts from the
start of training, not the stage's preparation (decoding slices, encoding code maps, drawing
slipped maps: shown on a line of its own and recorded as ``prepare_seconds``), and the time of
earlier sessions of the stage is carried in its checkpoint.

A stage whose budget is a minutes cap alone (no step budget) must fit a sensible number of steps:
``MIN_STEPS`` or one epoch, whichever is fewer. From the pace of its first steps (``PROBE_STEPS``
after a warm-up step; or sooner, if the cap runs out first) a stage that would not stops there and
raises BudgetTooSmall naming the setting, leaving no stage result and no state. A stage with a step budget is never
refused for minutes: it is the reproducible way to set a budget. When a stage ends, what
it spent and why it stopped go to RUN/state/STAGE/finished.json beside its last.ckpt: a later call
with a larger budget continues it (``can_continue``), one with the same or a smaller budget reuses
its result.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from brainvq.config import TrainConfig
from brainvq.runs import RunDir


@dataclass
class Budget:
    """What a stage may spend; it ends at whichever limit comes first (0 = no limit of that kind).
    ``max_steps`` counts steps as the user does (see the module docstring)."""

    max_steps: int = 0
    max_epochs: int = 0
    max_minutes: float = 0.0
    loss_threshold: float = 0.0

    @classmethod
    def of(cls, t: TrainConfig) -> Budget:
        """The budget a TrainConfig (a stage's, see stage_config) sets."""
        return cls(t.max_steps, t.max_epochs, t.max_minutes, t.loss_threshold)

    def allows_more(self, finished: dict) -> bool:
        """Whether this budget lets a stage that ended as ``finished`` (its finished.json) go on:
        every limit is beyond what it spent, and a loss threshold that stopped it is lowered."""

        def beyond(limit: float, spent: float) -> bool:
            return limit <= 0 or spent < limit

        if finished.get("stopped_by") == "loss_threshold":
            old = float(finished.get("budget", {}).get("loss_threshold", 0.0))
            if 0 < old <= self.loss_threshold:
                return False
        return (
            beyond(self.max_steps, finished["steps"])
            and beyond(self.max_epochs, finished["epochs"])
            and beyond(self.max_minutes * 60, finished["seconds"])
        )


STOP_REASONS = {
    "steps": ("its step budget", "max_steps"),
    "epochs": ("its epoch budget", "max_epochs"),
    "minutes": ("its minutes cap", "max_minutes"),
    "loss_threshold": ("its loss threshold", "loss_threshold"),
}


def stop_text(finished: dict, section: str) -> str:
    """Why a stage ended, e.g. "its step budget (prior.max_steps = 400)"."""
    why, key = STOP_REASONS.get(finished.get("stopped_by", ""), ("", ""))
    if not why:
        return "the end of its data"
    value = finished.get("budget", {}).get(key)
    return f"{why} ({section}.{key} = {value:g})" if value is not None else why


def finished_path(run: RunDir, stage: str) -> Path:
    """RUN/state/STAGE/finished.json: the budget a stage ended under, what it spent, and why."""
    return run.stage_state(stage) / "finished.json"


def read_finished(run: RunDir, stage: str) -> dict | None:
    """The stage's finished.json, or None (never finished, or from an older brainvq)."""
    try:
        record = json.loads(finished_path(run, stage).read_text())
        record["steps"], record["epochs"], record["seconds"]  # noqa: B018 - all present?
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None


def can_continue(run: RunDir, stage: str, budget: Budget) -> bool:
    """Whether a finished stage asked for ``budget`` goes on from its last.ckpt: it recorded the
    budget it ended under and this one is larger (Budget.allows_more)."""
    finished = read_finished(run, stage)
    last = run.stage_state(stage) / "last.ckpt"
    return finished is not None and last.exists() and budget.allows_more(finished)


MIN_STEPS = 100  # a minutes cap must fit this many steps, or one epoch if that is fewer
PROBE_STEPS = 3  # steps timed (after one warm-up step) to judge whether the cap fits them


@dataclass
class Probe:
    """Times a stage's first steps to judge whether its minutes cap fits the ``needed`` steps."""

    needed: int
    done: int = 0
    warm: float | None = None  # clock at the end of the warm-up step

    def refuses(self, now: float, elapsed: float, cap: float) -> float | None:
        """After each step: seconds per step if the cap cannot fit the needed steps (the cap
        already reached, or the timed steps' pace too slow), else None."""
        self.done += 1
        if self.done == 1:
            self.warm = now
        if elapsed >= cap and self.done < self.needed:
            return elapsed / self.done
        if self.done == PROBE_STEPS + 1:
            per_step = (now - self.warm) / PROBE_STEPS
            if elapsed + per_step * (self.needed - self.done) > cap:
                return per_step
        return None

    def over(self) -> bool:
        """True once the probe has judged."""
        return self.done > PROBE_STEPS


def too_small(section: str, cap_minutes: float, per_step: float, needed: int) -> str:
    """The one-line refusal of a minutes cap that fits fewer than ``needed`` steps."""
    fits = int(cap_minutes * 60 / per_step)
    return (
        f"{section}.max_minutes = {cap_minutes:g} fits about {fits} steps at {per_step:.2f} s a "
        f"step on this machine, fewer than the {needed} this stage needs at least ({MIN_STEPS} "
        f"or one epoch, whichever is fewer): raise {section}.max_minutes or set {section}.max_steps"
    )


class StageBudget(Callback):
    """Keeps a stage's minutes cap and records how the stage ended (``finish``).

    The clock starts at ``started`` (time.monotonic() when the stage began, its preparation
    included) and goes on from the seconds an earlier session of the stage had spent when its
    checkpoint was written. The cap is checked after every training batch (so a stage makes at
    least one step), with one decision for all processes under DDP. A first session with a
    minutes cap and no step budget is probed (``Probe``): ``refused`` holds the refusal if the cap
    cannot fit the steps the stage needs. ``record``: more fields for finished.json."""

    def __init__(
        self, budget: Budget, started: float, updates_per_step: int = 1, section: str = "train"
    ) -> None:
        self.budget = budget
        self.started = started
        self.updates_per_step = updates_per_step
        self.section = section
        self.offset = 0.0
        self.stopped = False
        self.refused: str | None = None
        self.record: dict = {}
        self._probe: Probe | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        b = self.budget
        if b.max_minutes <= 0 or b.max_steps > 0 or trainer.global_step > 0:
            return
        needed = min(MIN_STEPS, int(trainer.num_training_batches))  # 100 steps or one epoch
        if needed > 1:
            self._probe = Probe(needed)

    def elapsed(self) -> float:
        """Seconds the stage has spent, earlier sessions included."""
        return self.offset + time.monotonic() - self.started

    def state_dict(self) -> dict:
        return {"seconds": self.elapsed()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.offset = float(state_dict.get("seconds", 0.0))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        cap = self.budget.max_minutes * 60
        if cap <= 0 or trainer.should_stop:
            return
        if self._probe is not None:
            probe = self._probe
            per_step = probe.refuses(time.monotonic(), self.elapsed(), cap)
            if trainer.strategy.broadcast(per_step is not None):
                self.refused = too_small(
                    self.section, self.budget.max_minutes, per_step or 0.0, probe.needed
                )
                trainer.should_stop = True
                return
            if probe.over():
                self._probe = None
        if trainer.strategy.broadcast(self.elapsed() >= cap):
            trainer.should_stop = True
            self.stopped = True

    def steps(self, trainer: L.Trainer) -> int:
        """The stage's steps so far, as the user counts them."""
        return trainer.global_step // self.updates_per_step

    def finish(self, trainer: L.Trainer) -> dict:
        """How the stage ended: its budget, steps, epochs, seconds and ``stopped_by``."""
        steps, b = self.steps(trainer), self.budget
        if b.max_steps and steps >= b.max_steps:
            why = "steps"
        elif self.stopped:
            why = "minutes"
        elif any(getattr(c, "stopped", False) for c in trainer.callbacks if c is not self):
            why = "loss_threshold"
        elif b.max_epochs and trainer.current_epoch >= b.max_epochs:
            why = "epochs"
        else:
            why = "data"
        return {
            "budget": asdict(b),
            "steps": steps,
            "epochs": trainer.current_epoch,
            "seconds": round(self.elapsed(), 1),
            "stopped_by": why,
            **self.record,
        }
