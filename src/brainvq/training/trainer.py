"""Build a Lightning Trainer for a stage: precision, checkpoints, resume, budget, logs.

The budget (steps, epochs, minutes, loss threshold) is kept by brainvq.training.budget; a stage
that ends writes how it ended to RUN/state/STAGE/finished.json beside its last.ckpt. Before it
trains, ``begin_stage`` picks its precision (brainvq.training.precision) and says it, and what its
preparation took, in the stage's first lines.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from brainvq.config import TrainConfig
from brainvq.errors import BrainVQError, BudgetTooSmall, ConfigError, Interrupted
from brainvq.io import atomic_write_text
from brainvq.progress import duration, say, stderr_is_terminal
from brainvq.runs import RunDir
from brainvq.training.budget import Budget, StageBudget, finished_path
from brainvq.training.callbacks import (
    LineProgress,
    LossThresholdStop,
    RankStateDump,
    RollingCheckpoint,
    StopRequested,
)
from brainvq.training.hardware import resolve_accelerator, resolve_precision
from brainvq.training.logs import ResumableCSVLogger
from brainvq.training.precision import PrecisionChoice, stage_precision

# Lightning's chatter that says nothing to a brainvq user
for _pattern in (
    ".*does not have many workers.*",
    ".*The number of training batches.*",
    ".*Checkpoint directory.*exists and is not empty.*",
    ".*LeafSpec.*",
    ".*treespec.*",
    # the DCGAN stage's frozen VQ-VAE decoder stays in eval mode on purpose
    ".*module\\(s\\) in eval mode at the start of training.*",
    # resuming mid-epoch restarts the epoch's shuffle: fine for these stages
    ".*resuming from a checkpoint that ended before the epoch ended.*",
):
    warnings.filterwarnings("ignore", message=_pattern)


def stage_config(
    train: TrainConfig,
    batch_size: int,
    max_epochs: int,
    max_steps: int,
    max_minutes: float,
    seed: int,
) -> TrainConfig:
    """The TrainConfig of a stage after the VQ-VAE's (a prior, decoder tuning): its own batch,
    budget and seed; precision, accelerator, devices, logging and rank states from ``train``.

    The precision follows train.precision: under ``auto`` each stage measures its own model
    (brainvq.training.precision), so a prior that bf16 does not speed up trains in fp32 and one it
    does in bf16 (bench/results/precision.md: on a BF16 CPU some priors and decoder tuning gain,
    others lose)."""
    return TrainConfig(
        batch_size=batch_size,
        max_epochs=max_epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        seed=seed,
        precision=train.precision,
        channels_last=False,
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        log_every_n_steps=train.log_every_n_steps,
        tensorboard=train.tensorboard,
        save_rank_states=train.save_rank_states,
    )


def resume_path(run: RunDir, stage: str) -> Path | None:
    """last.ckpt of the stage if it exists (--fresh: brainvq.training.stage.fresh_start)."""
    last = run.stage_state(stage) / "last.ckpt"
    return last if last.exists() else None


def _loggers(run: RunDir, stage: str, t: TrainConfig) -> list:
    loggers = [ResumableCSVLogger(save_dir=str(run.logs), name=stage, version="")]
    if t.tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError(
                "train.tensorboard = true needs the tensorboard package: pip install tensorboard"
            )
        loggers.append(TensorBoardLogger(save_dir=str(run.logs), name=stage, version="tb"))
    return loggers


def budget_text(t: TrainConfig) -> str:
    """A stage's limits in words: '15 min, 1000 epochs' (0 = no limit of that kind)."""
    parts = [f"{t.max_minutes:g} min" if t.max_minutes > 0 else ""]
    parts.append(f"{t.max_steps} steps" if t.max_steps > 0 else "")
    parts.append(f"{t.max_epochs} epochs" if t.max_epochs < 10**6 else "")  # 10**9: by steps
    return ", ".join(p for p in parts if p)


def is_rank_zero() -> bool:
    """True in the one process of a plain run and in rank 0 of a launched DDP run."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("RANK", "0") == "0"


def begin_stage(
    stage: str,
    t: TrainConfig,
    module: L.LightningModule,
    loader,
    section: str,
    prepared: tuple[float, str] | None = None,
    updates_per_step: int = 1,
    progress: bool = True,
) -> PrecisionChoice:
    """The precision ``stage`` trains ``module`` in (``t.precision``; auto measures, see
    brainvq.training.precision), said in the stage's first line; then, where the stage prepared
    something (``prepared``: seconds, what), what that took, which its minutes cap does not count
    (both lines on stderr with ``progress``; finished.json records them either way)."""
    choice = stage_precision(
        stage, t.precision, resolve_accelerator(t.accelerator), module, loader,
        t.devices * t.num_nodes, updates_per_step,
    )  # fmt: skip
    if progress and is_rank_zero():
        say(choice.line(stage))
        if prepared is not None:
            seconds, what = prepared
            cap = f"{section}.max_minutes"
            say(f"{stage}: preparing {what} took {duration(seconds)} (not counted in {cap})")
    return choice


def make_trainer(
    run: RunDir,
    stage: str,
    t: TrainConfig,
    progress: bool = True,
    extra_callbacks: list | None = None,
    val_every: int = 1,
    unused_parameters: bool = False,
    updates_per_step: int = 1,
    precision: PrecisionChoice | None = None,
    section: str = "train",
    prepared_seconds: float = 0.0,
) -> L.Trainer:
    """A Trainer that checkpoints to RUN/state/STAGE, logs CSV to RUN/logs/STAGE and keeps the
    stage's budget (``t``'s max_steps, max_epochs, max_minutes, loss_threshold; ``section``
    names them in messages).

    The minutes cap counts from now: a stage's preparation (``prepared_seconds``, recorded in
    finished.json) is not in it. ``updates_per_step``: optimizer steps in one of the stage's steps
    (2 for a GAN's discriminator and generator updates), so that ``max_steps`` counts the stage's
    steps. ``precision``: begin_stage's choice (default: t.precision without measuring)."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no "GPU available" / tips chatter
    accelerator = resolve_accelerator(t.accelerator)
    if precision is None:
        precision = PrecisionChoice(resolve_precision(t.precision, accelerator), "not measured")
    clock = StageBudget(Budget.of(t), time.monotonic(), updates_per_step, section)
    clock.record = {"prepare_seconds": round(prepared_seconds, 1), **precision.record()}
    bars = progress and stderr_is_terminal()  # redirected: lines, not a bar's carriage returns
    callbacks = _callbacks(run, stage, t, clock, extra_callbacks or [], progress, bars)
    return L.Trainer(
        accelerator=accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        # a GAN's G and D steps each leave the other's parameters out of the loss
        strategy="ddp_find_unused_parameters_true"
        if unused_parameters and t.devices * t.num_nodes > 1
        else "auto",
        precision=precision.precision,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps * updates_per_step if t.max_steps > 0 else -1,
        callbacks=callbacks,
        logger=_loggers(run, stage, t),
        enable_progress_bar=bars,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=val_every,
        default_root_dir=str(run.path),
        enable_checkpointing=False,
    )


def _callbacks(
    run: RunDir, stage: str, t: TrainConfig, clock: StageBudget, extra: list, progress, bars
) -> list:
    """make_trainer's callbacks: checkpoints, the budget's clock, ``extra``, the loss threshold,
    rank states, and a progress bar (``bars``) or progress lines."""
    callbacks = [RollingCheckpoint(run.stage_state(stage)), clock, *extra]
    if t.loss_threshold > 0:
        callbacks.append(LossThresholdStop(t.loss_threshold))
    if t.save_rank_states:
        callbacks.append(RankStateDump(run.stage_state(stage)))
    if bars:
        callbacks.append(TQDMProgressBar(refresh_rate=5))
    elif progress:
        callbacks.append(LineProgress(stage, budget_text(t)))
    return callbacks


def fit_stage(
    trainer: L.Trainer, module: L.LightningModule, train_dl, val_dl, ckpt, run, stage
) -> dict:
    """trainer.fit with the project's rules: checkpoints load weights_only; a non-finite loss or a
    Ctrl-C becomes a one-line BrainVQError that says where the last good checkpoint is.

    Returns how the stage ended, also written to RUN/state/STAGE/finished.json (read_finished):
    its budget, the steps and epochs done, the seconds of training (earlier sessions
    included), ``stopped_by``: "steps", "epochs", "minutes", "loss_threshold" or "data", the
    preparation's seconds and the precision used and why. A stage whose minutes cap cannot fit the
    steps it needs (StageBudget's probe) raises BudgetTooSmall and leaves no state."""
    state = run.stage_state(stage)
    cb = next((c for c in trainer.callbacks if isinstance(c, RollingCheckpoint)), None)
    handler = signal.getsignal(signal.SIGINT)
    try:
        return _fit(trainer, module, train_dl, val_dl, ckpt, run, stage, state, cb)
    finally:
        # Lightning answers a KeyboardInterrupt by ignoring SIGINT and exiting; the process (a
        # Python session, the next command of a test run) must get its Ctrl-C back
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


def _fit(trainer, module, train_dl, val_dl, ckpt, run, stage, state, cb) -> dict:
    """fit_stage's body: fit, then turn how it ended into the project's errors or the record."""
    try:
        trainer.fit(
            module, train_dl, val_dl, ckpt_path=str(ckpt) if ckpt else None, weights_only=True
        )
    except StopRequested:
        raise Interrupted(_interrupted(cb, state)) from None
    except FloatingPointError as e:
        raise BrainVQError(
            f"training stopped: {e}; the last good checkpoint is kept in {state} "
            "(lower the learning rate and run the same command to resume)"
        ) from None
    except SystemExit:  # Lightning's answer to a second Ctrl-C
        raise Interrupted(f"interrupted; last checkpoint in {state}; rerun to resume") from None
    except Exception as e:
        if type(e).__name__ == "UnpicklingError" or "weights_only" in str(e):
            raise BrainVQError(
                f"{ckpt}: checkpoint holds objects that are not plain weights; refusing to load it "
                "(use --fresh to start over)"
            ) from None
        raise
    if (cb is not None and cb.interrupted) or trainer.interrupted:
        raise Interrupted(_interrupted(cb, state))
    clock = next(c for c in trainer.callbacks if isinstance(c, StageBudget))
    if clock.refused:  # its minutes cap cannot fit the steps it needs: no result, no state
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(run.logs / stage, ignore_errors=True)
        raise BudgetTooSmall(f"{stage}: {clock.refused}")
    finished = clock.finish(trainer)
    if trainer.is_global_zero:
        atomic_write_text(finished_path(run, stage), json.dumps(finished, indent=1) + "\n")
    return finished


def _interrupted(cb: RollingCheckpoint | None, state: Path) -> str:
    """What a Ctrl-C left: the checkpoint it saved, or the last one."""
    again = "run the same command again to resume"
    if cb is None or cb.saved_on_interrupt:
        return f"interrupted: checkpoint saved in {state}; {again}"
    if (state / "last.ckpt").exists():
        step = f" (step {cb.saved_step})" if cb.saved_step is not None else ""
        return f"interrupted during validation: the last checkpoint{step} is in {state}; {again}"
    return "interrupted before the first checkpoint; run the same command again to start over"
