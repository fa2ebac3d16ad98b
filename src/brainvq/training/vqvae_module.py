"""LightningModule for the VQ-VAE stage: reconstruction + commitment (+ SSIM) loss."""

from __future__ import annotations

import lightning as L
import torch

from brainvq.config import Config
from brainvq.metrics import ssim
from brainvq.nn.vqvae import VQVAE, image_loss, recon_loss


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
