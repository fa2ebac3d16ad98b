"""The prior stage: a run's code maps -> a trained prior in RUN/prior-<kind>.safetensors."""

from __future__ import annotations

import copy
import json
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from brainvq.codes import code_maps
from brainvq.config import Config, TrainConfig
from brainvq.errors import RunError
from brainvq.priors import prior_path
from brainvq.runs import load_run
from brainvq.training.dcgan_module import DCGANModule
from brainvq.training.trainer import fit_stage, make_trainer, resume_path


def prior_train_config(cfg: Config) -> TrainConfig:
    """The TrainConfig of the prior stage, from cfg.prior (fp32; devices etc. from cfg.train)."""
    p, t = cfg.prior, cfg.train
    return TrainConfig(
        batch_size=p.batch_size,
        max_epochs=p.max_epochs,
        max_minutes=p.max_minutes,
        seed=p.seed,
        precision="32",
        channels_last=False,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        log_every_n_steps=t.log_every_n_steps,
        tensorboard=t.tensorboard,
        save_rank_states=t.save_rank_states,
    )


def _data_root(run_path, data: str | None) -> str:
    if data is not None:
        return str(data)
    source = run_path / "data.json"
    try:
        return json.loads(source.read_text())["data"]
    except (OSError, ValueError, KeyError):
        raise RunError(
            f"{source}: cannot tell which data the run was trained on; pass --data"
        ) from None


def train_prior(
    run_path: str,
    cfg: Config,
    kind: str = "dcgan",
    data: str | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict:
    """Train (or resume, or reuse) the prior of a run; returns a summary dict.

    The VQ-VAE settings come from the run's own config; cfg contributes the `prior` section (and
    accelerator/devices from `train`). Weights go to RUN/prior-<kind>.safetensors, checkpoints to
    RUN/state/prior-<kind>/, CSV logs to RUN/logs/prior-<kind>/.
    """
    if kind != "dcgan":
        raise RunError(f"prior kind {kind!r}: only dcgan is available")
    run = load_run(run_path)
    stage = f"prior-{kind}"
    weights = prior_path(run.dir, kind)
    if fresh:
        weights.unlink(missing_ok=True)
    elif weights.exists():
        return {"status": "reused", "weights": str(weights)}
    pcfg = copy.deepcopy(run.config)
    pcfg.prior = copy.deepcopy(cfg.prior)
    pcfg.train.accelerator = cfg.train.accelerator
    pcfg.train.devices, pcfg.train.num_nodes = cfg.train.devices, cfg.train.num_nodes
    pcfg.train.tensorboard = cfg.train.tensorboard
    pcfg.train.save_rank_states = cfg.train.save_rank_states
    pcfg.validate()

    codes = torch.from_numpy(code_maps(run, _data_root(run.dir.path, data))["train"]).long()
    if codes.numel() == 0:
        raise RunError(f"{run.dir.path}: the training split has no code maps to fit a prior on")
    h, w = codes.shape[1:]
    if h != w:
        raise RunError(f"{run.dir.path}: code maps are {h}x{w}; the DCGAN prior needs square maps")
    t = prior_train_config(pcfg)
    L.seed_everything(t.seed, verbose=False)
    torch.set_float32_matmul_precision("high")
    p = pcfg.prior
    # Real maps are few (hundreds to thousands): an "epoch" is steps_per_epoch batches drawn as
    # back-to-back shuffles, so checkpoints and epoch logs come at a sensible pace.
    sampler = RandomSampler(
        TensorDataset(codes),
        num_samples=p.steps_per_epoch * p.batch_size,
        generator=torch.Generator().manual_seed(t.seed),
    )
    loader = DataLoader(TensorDataset(codes), p.batch_size, sampler=sampler, drop_last=True)
    if len(codes) < p.batch_size:
        loader = DataLoader(TensorDataset(codes), p.batch_size, sampler=sampler)

    codebook = run.vqvae.quantizer.embedding.detach().float().cpu()
    module = DCGANModule(pcfg, codebook, h)
    ckpt = resume_path(run.dir, stage, fresh)
    trainer = make_trainer(run.dir, stage, t, progress, unused_parameters=True)
    started = time.time()
    fit_stage(trainer, module, loader, None, ckpt, run.dir, stage)
    prior = copy.deepcopy(module.sampler()).float().cpu()
    prior.recalibrate_bn(seed=t.seed)
    if trainer.is_global_zero:
        prior.save(weights, pcfg)
    sample = prior.sample(min(256, 4 * len(codes)), seed=t.seed)
    metrics = trainer.callback_metrics
    return {
        "status": "resumed" if ckpt else "trained",
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "seconds": round(time.time() - started, 1),
        "g_loss": float(metrics.get("g_loss_epoch", float("nan"))),
        "d_loss": float(metrics.get("d_loss_epoch", float("nan"))),
        "sample_codes_used": int(torch.unique(sample).numel()),
        "weights": str(weights),
        "is_global_zero": trainer.is_global_zero,
    }
