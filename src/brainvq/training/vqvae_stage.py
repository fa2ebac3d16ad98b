"""The VQ-VAE stage: data -> trained VQVAE weights in the run folder."""

from __future__ import annotations

import json
import time

import lightning as L
import torch

from brainvq.config import Config
from brainvq.data import load_splits
from brainvq.runs import RunDir, atomic_write_text, check_compatible, save_vqvae
from brainvq.training.loaders import slice_loader
from brainvq.training.trainer import fit_stage, make_trainer, resume_path
from brainvq.training.vqvae_module import VQVAEModule


def train_vqvae(
    data: str,
    run_path: str,
    cfg: Config,
    fresh: bool = False,
    progress: bool = True,
) -> dict:
    """Train (or resume, or reuse) the VQ-VAE of a run; returns a summary dict."""
    run = RunDir(run_path)
    created = not run.path.exists()
    try:
        return _train_vqvae(data, run, cfg, fresh, progress)
    except Exception:
        if created and run.path.is_dir() and not any(run.path.iterdir()):
            run.path.rmdir()  # nothing half-written: a run folder we made and left empty goes
        raise


def _train_vqvae(data: str, run: RunDir, cfg: Config, fresh: bool, progress: bool) -> dict:
    run.ensure_writable()
    if fresh:
        run.vqvae.unlink(missing_ok=True)
    else:
        check_compatible(run, cfg)
    if run.vqvae.exists() and not fresh:
        return {"status": "reused", "weights": str(run.vqvae)}

    arrays = load_splits(data, cfg.data, progress=progress)
    cfg.save(run.config)
    atomic_write_text(
        run.data_source,
        json.dumps({"data": str(data), "sizes": {k: len(v) for k, v in arrays.items()}}) + "\n",
    )
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
    trainer = make_trainer(run, "vqvae", t, progress)
    started = time.time()
    fit_stage(trainer, module, train_dl, val_dl, ckpt, run, "vqvae")
    model = getattr(module.model, "_orig_mod", module.model).float().cpu()
    if trainer.is_global_zero:
        save_vqvae(model.to(memory_format=torch.contiguous_format), run.vqvae, cfg)
    return {
        "status": "resumed" if ckpt else "trained",
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "seconds": round(time.time() - started, 1),
        "val_ssim": float(trainer.callback_metrics.get("val_ssim", float("nan"))),
        "weights": str(run.vqvae),
        "is_global_zero": trainer.is_global_zero,
    }
