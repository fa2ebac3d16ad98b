"""The VQ-VAE stage: slices -> trained VQ-VAE weights in the run folder.

    from brainvq.config import Config
    from brainvq.training.vqvae import train_vqvae
    summary = train_vqvae("default", "runs/demo", Config())   # or `brainvq train-vqvae`

The loss is the image loss (MSE + train.ssim_loss_weight * (1 - SSIM), brainvq.nn.vqvae.image_loss)
plus the quantizer's commitment loss. Logged: loss, codebook usage and perplexity per step,
validation SSIM and MSE per epoch.
"""

from __future__ import annotations

import json
import math
import time

import lightning as L
import torch

from brainvq.config import Config
from brainvq.data import load_data
from brainvq.data.subjects import describe as describe_subjects
from brainvq.data.subjects import warn_leaks
from brainvq.io import atomic_write_text
from brainvq.metrics import ssim
from brainvq.nn.vqvae import VQVAE, image_loss, recon_loss
from brainvq.runs import RunDir, check_compatible, save_vqvae
from brainvq.training.budget import Budget, can_continue, read_finished, stop_text
from brainvq.training.loaders import slice_loader
from brainvq.training.trainer import fit_stage, make_trainer, resume_path


class VQVAEModule(L.LightningModule):
    """Trains a VQVAE; logs loss, codebook usage and perplexity, and validation SSIM each epoch."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = VQVAE(cfg.vqvae)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        x = self._prep(batch)
        out = self.model(x)
        image, mse = image_loss(out.recon, x, self.cfg.train.ssim_loss_weight)
        loss = image + out.vq_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {self.global_step}")
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        self.log("mse", mse, on_step=False, on_epoch=True, sync_dist=True)
        self.log("usage", out.usage, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        self.log("perplexity", out.perplexity, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x = self._prep(batch)
        out = self.model(x)
        recon = out.recon.float().clamp(0, 1)
        s = ssim(recon, x.float())
        self.log(
            "val_ssim", s.mean(), prog_bar=True, on_epoch=True, batch_size=len(x), sync_dist=True
        )
        self.log("val_mse", recon_loss(recon, x), on_epoch=True, batch_size=len(x), sync_dist=True)

    def configure_optimizers(self):
        t = self.cfg.train
        return torch.optim.Adam(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def train_vqvae(
    data: str,
    run_path: str,
    cfg: Config,
    fresh: bool = False,
    progress: bool = True,
) -> dict:
    """Train (or resume, or reuse) the VQ-VAE of a run; returns a summary dict.

    A finished VQ-VAE is reused, unless ``fresh`` or the budget in ``cfg.train`` is larger than
    the one it finished under: then training goes on from its last checkpoint ("continued")."""
    run = RunDir(run_path)
    created = not run.path.exists()
    try:
        return _train_vqvae(data, run, cfg, fresh, progress)
    except Exception:
        if created and run.path.is_dir() and not any(run.path.iterdir()):
            run.path.rmdir()  # nothing half-written: a run folder we made and left empty goes
        raise


def _train_vqvae(data: str, run: RunDir, cfg: Config, fresh: bool, progress: bool) -> dict:
    started = time.monotonic()
    run.ensure_writable()
    if fresh:
        run.vqvae.unlink(missing_ok=True)
    else:
        check_compatible(run, cfg)
    continued = False
    if run.vqvae.exists() and not fresh:
        if not can_continue(run, "vqvae", Budget.of(cfg.train)):
            finished = read_finished(run, "vqvae")
            subjects = _recorded_subjects(run)
            return {
                "status": "reused",
                "weights": str(run.vqvae),
                "finished": finished,
                "data": subjects,
            }
        continued = True

    splits, arrays = load_data(data, cfg.data, progress=progress)
    subjects = splits.subject_summary()
    warn_leaks(subjects)
    cfg.save(run.config)
    record = {"data": str(data), "sizes": {k: len(v) for k, v in arrays.items()}, **subjects}
    atomic_write_text(run.data_source, json.dumps(record, indent=2) + "\n")
    L.seed_everything(cfg.train.seed, verbose=False)
    torch.set_float32_matmul_precision("high")
    t = cfg.train
    pin = torch.cuda.is_available()
    train_dl = slice_loader(arrays["train"], t.batch_size, True, t.num_workers, True, t.seed, pin)
    val_dl = slice_loader(arrays["validate"], max(t.batch_size, 64), False, 0, pin_memory=pin)

    module = VQVAEModule(cfg)
    if t.compile:
        module.model = torch.compile(module.model)
    ckpt = resume_path(run, "vqvae", fresh)
    trainer = make_trainer(run, "vqvae", t, progress, started=started)
    finished = fit_stage(trainer, module, train_dl, val_dl, ckpt, run, "vqvae")
    model = getattr(module.model, "_orig_mod", module.model).float().cpu()
    if trainer.is_global_zero:
        save_vqvae(model.to(memory_format=torch.contiguous_format), run.vqvae, cfg)
    # Under DDP the other ranks go on to the prior stage, which reads these weights: they wait
    # here until rank 0 has written them.
    trainer.strategy.barrier("vqvae-saved")
    return {
        "status": "continued" if continued else "resumed" if ckpt else "trained",
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "seconds": round(time.monotonic() - started, 1),
        "finished": finished,
        "val_ssim": float(trainer.callback_metrics.get("val_ssim", float("nan"))),
        "weights": str(run.vqvae),
        "is_global_zero": trainer.is_global_zero,
        "data": subjects,
    }


def _recorded_subjects(run: RunDir) -> dict | None:
    """The subject summary RUN/data.json holds (None for runs made before it had one)."""
    try:
        record = json.loads(run.data_source.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "subjects" in record else None


def describe(result: dict) -> str:
    """What train_vqvae did: the subjects of the splits, then one line on the VQ-VAE and which
    limit of its budget ended it."""
    subjects = f"{describe_subjects(result['data'])}\n" if result.get("data") else ""
    finished = result.get("finished")
    if result["status"] == "reused":
        done = ""
        if finished:
            done = f" ({finished['steps']} steps; {stop_text(finished, 'train')} ended it)"
        return (
            f"{subjects}VQ-VAE already trained{done}: {result['weights']}; a larger budget "
            "continues it, --fresh retrains"
        )
    ended = f", ended by {stop_text(finished, 'train')}" if finished else ""
    val = f"validation SSIM {result['val_ssim']:.4f}"
    if math.isnan(result["val_ssim"]):
        val = "not validated yet (it ended before an epoch's end)"
    return subjects + (
        f"VQ-VAE {result['status']}: {result['epochs']} epochs, {result['steps']} steps in "
        f"{result['seconds']:.0f}s{ended}; {val} -> {result['weights']}"
    )
