"""Callbacks shared by the training stages."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback


class LossThresholdStop(Callback):
    """Stop once an epoch's mean training loss falls below a threshold (the original's rule)."""

    def __init__(self, threshold: float, monitor: str = "loss_epoch") -> None:
        self.threshold = threshold
        self.monitor = monitor

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) < self.threshold:
            trainer.should_stop = True
            pl_module.print(f"{self.monitor} {float(value):.5f} < {self.threshold}: stopping")


class RollingCheckpoint(Callback):
    """Keep DIR/last.ckpt current: after every epoch and every `every_minutes` of training.

    Each save goes to a temporary file first and is renamed into place, so a crash or kill at any
    moment leaves either the previous or the new checkpoint, never a torn one.
    """

    def __init__(self, dirpath: str | Path, every_minutes: float = 2.0) -> None:
        self.dirpath = Path(dirpath)
        self.every_s = every_minutes * 60
        self._last = time.monotonic()

    @property
    def path(self) -> Path:
        """Where the checkpoint lives."""
        return self.dirpath / "last.ckpt"

    def save(self, trainer: L.Trainer) -> None:
        """Write the trainer's full state atomically."""
        tmp = self.dirpath / ".last.ckpt.tmp"
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(tmp))
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier()
        self._last = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.monotonic()
        # resumed: rows logged after this checkpoint belong to work that is about to be redone
        for logger in trainer.loggers:
            drop = getattr(logger.experiment, "drop_rows_from", None)
            if drop is not None and trainer.is_global_zero:
                drop(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_s > 0 and time.monotonic() - self._last > self.every_s:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.save(trainer)
