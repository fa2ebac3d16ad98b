"""Callbacks shared by the training stages."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from brainvq.errors import RunError
from brainvq.io import atomic_path
from brainvq.progress import FIRST_LINE_S, LINE_EVERY_S, duration, say
from brainvq.runs import atomic_save_safetensors


class LossThresholdStop(Callback):
    """Stop once an epoch's mean training loss falls below a threshold (the original's rule)."""

    def __init__(self, threshold: float, monitor: str = "loss_epoch") -> None:
        self.threshold = threshold
        self.monitor = monitor
        self.stopped = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) < self.threshold:
            trainer.should_stop = True
            self.stopped = True
            pl_module.print(f"{self.monitor} {float(value):.5f} < {self.threshold}: stopping")


class StopRequested(Exception):
    """Raised by RollingCheckpoint after a Ctrl-C to end trainer.fit at once."""


class RollingCheckpoint(Callback):
    """Keep DIR/last.ckpt current: after every epoch and every `every_minutes` of training.

    Each save goes to a temporary file first and is renamed into place, so a crash or kill at any
    moment leaves either the previous or the new checkpoint, never a torn one.

    Ctrl-C (SIGINT) during training does not kill the step in flight: the first one asks for a
    stop; after the current training batch the checkpoint is written and StopRequested ends the
    fit (Lightning's own stop, ``should_stop``, would first run a whole validation pass: minutes
    on a large split). During validation it ends at the current batch, keeping the last
    checkpoint (``saved_step``), since a checkpoint taken mid-validation would not resume
    cleanly. ``interrupted`` is set either way; a second Ctrl-C interrupts at once.
    """

    def __init__(self, dirpath: str | Path, every_minutes: float = 2.0) -> None:
        self.dirpath = Path(dirpath)
        self.every_s = every_minutes * 60
        self._last = time.monotonic()
        self.interrupted = False
        self.saved_on_interrupt = False
        self.saved_step: int | None = None  # global step of the last checkpoint this run wrote
        self._previous_handler = None

    @property
    def path(self) -> Path:
        """Where the checkpoint lives."""
        return self.dirpath / "last.ckpt"

    def save(self, trainer: L.Trainer) -> None:
        """Write the trainer's full state atomically (only rank 0 writes; every rank must call)."""
        try:
            if trainer.is_global_zero:
                with atomic_path(self.path) as tmp:
                    trainer.save_checkpoint(str(tmp))
            else:
                trainer.save_checkpoint(str(self.path))
        except RuntimeError as e:
            raise RunError(
                f"{self.path}: could not write the checkpoint ({e}); free disk space and run the "
                "same command again to resume from the previous checkpoint"
            ) from None
        trainer.strategy.barrier()
        self._last = time.monotonic()
        self.saved_step = trainer.global_step

    def _on_sigint(self, signum, frame) -> None:
        if self.interrupted:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.interrupted = True

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        # resumed: rows logged after this checkpoint belong to work that is about to be redone
        for logger in trainer.loggers:
            drop = getattr(logger.experiment, "drop_rows_from", None)
            if drop is not None and trainer.is_global_zero:
                drop(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.interrupted:
            self.save(trainer)
            self.saved_on_interrupt = True
            raise StopRequested
        if self.every_s > 0 and time.monotonic() - self._last > self.every_s:
            self.save(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        if self.interrupted and not trainer.sanity_checking:
            raise StopRequested

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        self._restore_handler()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.save(trainer)


class LineProgress(Callback):
    """Training progress as plain lines on stderr, for a log file or a pipe (a bar's carriage
    returns would fill it with thousands of lines): one line when the stage starts, then one once
    it has run FIRST_LINE_S and at most one a minute after that, each with the epoch, step, speed,
    time and the metrics a bar would show."""

    def __init__(
        self,
        stage: str,
        budget: str = "",
        first_s: float | None = None,
        every_s: float | None = None,
    ) -> None:
        self.stage, self.budget = stage, budget
        self.first_s = FIRST_LINE_S if first_s is None else first_s
        self.every_s = LINE_EVERY_S if every_s is None else every_s
        self._start = self._next = 0.0
        self._steps0 = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        self._next = self._start + self.first_s
        self._steps0 = trainer.global_step
        if trainer.is_global_zero:
            resumed = f", resumed at step {trainer.global_step}" if trainer.global_step else ""
            budget = f" (budget: {self.budget})" if self.budget else ""
            say(f"{self.stage}: training{budget}{resumed}")

    def line(self, trainer: L.Trainer) -> str:
        """Where training stands, in one line."""
        elapsed = time.monotonic() - self._start
        rate = (trainer.global_step - self._steps0) / max(elapsed, 1e-9)
        metrics = ", ".join(
            f"{k.removesuffix('_epoch')} {float(v):.4g}"
            for k, v in trainer.progress_bar_metrics.items()
            if not k.endswith("_step") and k != "v_num"
        )
        text = (
            f"{self.stage}: epoch {trainer.current_epoch}, step {trainer.global_step}, "
            f"{rate:.2f} steps/s, {duration(elapsed)}"
        )
        return f"{text}: {metrics}" if metrics else text

    def _maybe_say(self, trainer: L.Trainer) -> None:
        now = time.monotonic()
        if now >= self._next and trainer.is_global_zero:
            self._next = now + self.every_s
            say(self.line(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_say(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe_say(trainer)


class RankStateDump(Callback):
    """At the end of training every rank writes its model state to DIR/rankN.safetensors.

    A diagnostic for multi-process training: the files of all ranks should be identical.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {k: v.detach().float().cpu() for k, v in pl_module.state_dict().items()}
        path = self.dirpath / f"rank{trainer.global_rank}.safetensors"
        atomic_save_safetensors(state, path, {"rank": trainer.global_rank})
