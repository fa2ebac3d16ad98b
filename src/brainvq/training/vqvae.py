"""The VQ-VAE stage: slices -> trained VQ-VAE weights in the run folder.

    from brainvq.config import Config
    from brainvq.training.vqvae import train_vqvae
    summary = train_vqvae("default", "runs/demo", Config())   # or `brainvq train-vqvae`

The loss is the image loss (MSE + train.ssim_loss_weight * (1 - SSIM), brainvq.nn.vqvae.image_loss)
plus the quantizer's commitment loss. Logged: loss, codebook usage and perplexity per step,
validation SSIM and MSE per epoch.

With vqvae.adversarial_weight > 0 the stage is VQGAN's (Esser et al. 2021): from step
vqvae.adversarial_start on, a patch discriminator (brainvq.nn.patchgan) learns to tell the
reconstructions from the slices (hinge loss) and the autoencoder adds its adversarial loss, weighted
by vqvae.adversarial_weight times the adaptive weight (gradient-norm ratio at the decoder's last
layer). Both train in the same step from one Adam with two parameter groups (the discriminator's
with betas 0.5, 0.9), so the step count, budgets, resume and DDP work as without it; the
discriminator's logits on the reconstructions feed the autoencoder's loss with its own weights
frozen. Also logged then: d_loss, g_loss, adv_weight (the adaptive weight times
vqvae.adversarial_weight), d_real and d_fake (mean patch logits). The discriminator lives in the
stage's checkpoint only; vqvae.safetensors holds the VQ-VAE as always.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import torch

from brainvq.config import Config
from brainvq.data import load_data
from brainvq.data.covariates import covariate_record
from brainvq.data.subjects import describe as describe_subjects
from brainvq.data.subjects import warn_leaks
from brainvq.errors import RunError
from brainvq.io import atomic_write_text
from brainvq.metrics import ssim
from brainvq.nn.patchgan import PatchDiscriminator, adversarial_losses, log_adversarial
from brainvq.nn.vqvae import VQVAE, image_loss, recon_loss
from brainvq.runs import RunDir, check_compatible, save_vqvae
from brainvq.training.budget import Budget
from brainvq.training.loaders import slice_loader
from brainvq.training.stage import Prepared, Stage, StageResult, StageText, run_stage
from brainvq.training.stage import describe as describe  # the stage's lines (a re-export)


class VQVAEModule(L.LightningModule):
    """Trains a VQVAE; logs loss, codebook usage and perplexity, and validation SSIM each epoch."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = VQVAE(cfg.vqvae)
        v = cfg.vqvae
        self.disc = PatchDiscriminator(v.disc_channels, v.disc_layers) if v.adversarial() else None
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            if self.disc is not None:
                self.disc = self.disc.to(memory_format=torch.channels_last)

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
        if self.disc is not None and self.global_step >= self.cfg.vqvae.adversarial_start:
            loss = loss + self._adversarial(x, out.recon, image)
        return loss

    def _adversarial(self, x: torch.Tensor, recon: torch.Tensor, image: torch.Tensor):
        """The weighted adversarial loss of the autoencoder plus the discriminator's loss."""
        last = self._vqvae().decoder.net[-1].weight
        w = self.cfg.vqvae.adversarial_weight
        losses = adversarial_losses(self.disc, x, recon, image, last, w)
        if not torch.isfinite(losses.total):
            raise FloatingPointError(f"non-finite adversarial loss at step {self.global_step}")
        log_adversarial(self, losses)
        return losses.total

    def _vqvae(self) -> VQVAE:
        return getattr(self.model, "_orig_mod", self.model)  # under torch.compile too

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
        t, v = self.cfg.train, self.cfg.vqvae
        groups = [{"params": list(self.model.parameters())}]
        if self.disc is not None:  # VQGAN's discriminator betas; no weight decay
            lr = v.disc_lr or t.lr
            groups.append({"params": list(self.disc.parameters()), "lr": lr, "betas": (0.5, 0.9)})
            groups[-1]["weight_decay"] = 0.0
        return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse, in one line, a checkpoint made with the discriminator on when it is now off (or
        the other way round)."""
        had = any(k.startswith("disc.") for k in checkpoint.get("state_dict", {}))
        if had != (self.disc is not None):
            raise RunError(
                f"the VQ-VAE checkpoint was made with vqvae.adversarial_weight "
                f"{'> 0' if had else '= 0'}; resume with the same setting, or use --fresh"
            )


def train_vqvae(
    data: str,
    run_path: str,
    cfg: Config,
    fresh: bool = False,
    progress: bool = True,
) -> StageResult:
    """Train (or resume, or reuse) the VQ-VAE of a run; returns its StageResult (extras: epochs,
    val_ssim, data: the subjects of the splits).

    A finished VQ-VAE is reused, unless ``fresh`` or the budget in ``cfg.train`` is larger than
    the one it finished under: then training goes on from its last checkpoint ("continued")."""
    run = RunDir(run_path)
    created = not run.path.exists()
    try:
        run.ensure_writable()
        return run_stage(VQVAEStage(data, run, cfg, fresh, progress))
    except Exception:
        if created and run.path.is_dir() and not any(run.path.iterdir()):
            run.path.rmdir()  # nothing half-written: a run folder we made and left empty goes
        raise


class VQVAEStage(Stage):
    """The VQ-VAE stage for run_stage: the run's slices, VQVAEModule, RUN/vqvae.safetensors."""

    name, section, barrier = "vqvae", "train", "vqvae-saved"

    def __init__(self, data: str, run: RunDir, cfg: Config, fresh: bool, progress: bool) -> None:
        self.data, self.run, self.cfg, self.fresh, self.progress = data, run, cfg, fresh, progress
        self.weights = run.vqvae
        # the discriminator has no gradient before vqvae.adversarial_start
        self.unused_parameters = cfg.vqvae.adversarial()
        self.subjects: dict | None = None

    def budget(self) -> Budget:
        return Budget.of(self.cfg.train)

    def decide(self) -> StageResult | None:
        if not self.fresh:
            check_compatible(self.run, self.cfg)
        return super().decide()

    def reused(self, **extras) -> StageResult:
        return super().reused(data=_recorded_subjects(self.run), **extras)

    def prepare(self, ckpt: Path | None) -> Prepared:
        data, run, cfg = self.data, self.run, self.cfg
        splits, arrays = load_data(data, cfg.data, progress=self.progress)
        self.subjects = subjects = splits.subject_summary()
        warn_leaks(subjects)
        cfg.save(run.config)
        # an absolute path, so commands run from another folder find the run's data
        source = str(Path(data).resolve()) if data != "default" and Path(data).exists() else data
        record = {"data": source, "sizes": {k: len(v) for k, v in arrays.items()}, **subjects}
        record |= covariate_record(splits, cfg.data.subjects_table, data, cfg.data.subject_pattern)
        atomic_write_text(run.data_source, json.dumps(record, indent=2) + "\n")
        L.seed_everything(cfg.train.seed, verbose=False)
        torch.set_float32_matmul_precision("high")
        t = cfg.train
        pin = torch.cuda.is_available()
        train = slice_loader(arrays["train"], t.batch_size, True, t.num_workers, True, t.seed, pin)
        val = slice_loader(arrays["validate"], max(t.batch_size, 64), False, 0, pin_memory=pin)
        module = VQVAEModule(cfg)
        return Prepared(module, train, val, t, f"{len(arrays['train'])} training slices", ckpt)

    def ready(self, module: VQVAEModule) -> None:
        if self.cfg.train.compile:
            module.model = torch.compile(module.model)

    def finish(self, module: VQVAEModule, trainer: L.Trainer | None, zero: bool) -> dict:
        model = getattr(module.model, "_orig_mod", module.model).float().cpu()
        if zero:
            save_vqvae(model.to(memory_format=torch.contiguous_format), self.weights, self.cfg)
        val_ssim = float(trainer.callback_metrics.get("val_ssim", float("nan")))
        return {"epochs": trainer.current_epoch, "val_ssim": val_ssim, "data": self.subjects}

    def text(self, result: StageResult) -> StageText:
        data = result.extras.get("data")
        notes = (describe_subjects(data),) if data else ()
        text = StageText("VQ-VAE", self.section, notes=notes)
        if result.status != "reused":
            val = f"validation SSIM {result['val_ssim']:.4f}"
            if math.isnan(result["val_ssim"]):
                val = "not validated yet (it ended before an epoch's end)"
            epochs = result["epochs"]
            text.line = f"VQ-VAE {result.status}: {epochs} epochs, {{work}}{{ended}}; {val} -> "
            text.line += result.weights
        return text


def _recorded_subjects(run: RunDir) -> dict | None:
    """The subject summary RUN/data.json holds (None for runs made before it had one)."""
    try:
        record = json.loads(run.data_source.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "subjects" in record else None
