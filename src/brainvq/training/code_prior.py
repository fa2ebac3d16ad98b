"""LightningModule for the priors trained by predicting codes: pixelcnn and transformer (maximum
likelihood) and maskgit (hidden-code prediction).

The loss is the prior's ``loss(codes)``: for the autoregressive priors the mean negative
log-likelihood per code (cross-entropy of each code given the codes before it), for maskgit the
cross-entropy of the hidden codes of partly hidden maps. Logged: ``bpc`` (training bits per code)
and ``val_bpc`` on the validation maps each epoch. With a few hundred training maps these priors
overfit within minutes, so the module keeps a copy of the weights with the lowest ``val_bpc`` seen
(carried in the checkpoint, so a resumed run keeps it too) and the stage saves those: early
stopping without stopping.

A conditioned prior (``conditions``: "level", "below") gets batches (codes, levels, maps of the
slices below; brainvq.training.loaders.LevelledCodes). In training LEVEL_DROPOUT of the maps are
shown with the level unknown (so the prior also scores maps whose level is not known) and
``prior.below_dropout`` without the slice below (what single slices and a stack's lowest slice
are drawn from); in validation every other map goes without the slice below, the same ones each
epoch. A prior conditioned on covariates (``prior.conditions``) gets them last in each batch;
in training ``prior.condition_dropout`` of the maps are shown with all of them unknown (the
unconditioned path that classifier-free guidance needs) and, independently, each covariate is
unknown in that share of the maps (so any subset can be asked for); validation shows them all.
"""

from __future__ import annotations

import copy
import math

import lightning as L
import torch

from brainvq.config import Config
from brainvq.priors import Prior, build_prior

LEVEL_DROPOUT = 0.1  # share of training maps a level-conditioned prior sees without their level


class CodePredictionModule(L.LightningModule):
    """Trains a PixelCNNPrior, TransformerPrior or MaskGITPrior on code maps."""

    def __init__(
        self,
        cfg: Config,
        codebook: torch.Tensor,
        code_size: int,
        conditions: tuple = (),
        level_info: dict | None = None,
        covariates: list[dict] | tuple = (),
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.prior: Prior = build_prior(cfg.prior, codebook, code_size, conditions, covariates)
        self.prior.level_info = dict(level_info or {})
        self.best_val = math.inf
        self.best_state: dict | None = None

    def _unpack(self, batch, training: bool) -> tuple[torch.Tensor, dict]:
        """(codes, conditions as keyword arguments of the prior's loss), with the dropouts."""
        if not isinstance(batch, (list, tuple)):
            return batch, {}
        cond = {}
        if len(batch) == 4 and self.prior.covariates:
            cond["covariates"] = self._drop_covariates(batch[3], training)
        if len(batch) == 1 or not self.prior.conditions:
            return batch[0], cond
        codes, levels, below = batch[:3]
        n = len(codes)
        if "level" in self.prior.conditions:
            if training:
                levels = levels.masked_fill(
                    torch.rand(n, device=levels.device) < LEVEL_DROPOUT, math.nan
                )
            cond["levels"] = levels
        if "below" in self.prior.conditions:
            if training:
                drop = torch.rand(n, device=codes.device) < self.cfg.prior.below_dropout
            else:
                drop = torch.arange(n, device=codes.device) % 2 == 0
            cond["below"] = below.masked_fill(drop[:, None, None], self.prior.codebook_size)
        return codes, cond

    def _drop_covariates(self, cov: torch.Tensor, training: bool) -> torch.Tensor:
        """Covariates (B, C) with prior.condition_dropout of the maps' all unknown and, apart
        from those, each unknown in that share (training only)."""
        p = self.cfg.prior.condition_dropout
        if not training or p <= 0:
            return cov
        every = torch.rand(len(cov), 1, device=cov.device) < p
        each = torch.rand(cov.shape, device=cov.device) < p
        return cov.masked_fill(every | each, math.nan)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        codes, cond = self._unpack(batch, training=True)
        loss = self.prior.loss(codes, **cond)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite prior loss at step {self.global_step}")
        bpc = loss.detach() / math.log(2)
        self.log("bpc", bpc, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(2, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx: int) -> None:
        codes, cond = self._unpack(batch, training=False)
        loss = self.prior.loss(codes, **cond)
        n = codes.numel()
        self._val_sums += torch.stack([loss.detach().double() * n, loss.new_tensor(n).double()])

    def on_validation_epoch_end(self) -> None:
        # this epoch's exact mean over every validation code, summed over ranks under DDP; the
        # same number is logged and decides which weights are kept
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        if float(sums[1]) == 0:
            return
        val = float(sums[0] / sums[1]) / math.log(2)
        self.log("val_bpc", val, prog_bar=True, sync_dist=True)  # equal on every rank
        if val < self.best_val:
            self.best_val = val
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in self.prior.state_dict().items()
            }

    def best_prior(self) -> Prior:
        """A copy of the prior holding the weights with the lowest validation bits/code."""
        prior = copy.deepcopy(self.prior).cpu()
        if self.best_state is not None:
            prior.load_state_dict(self.best_state)
        return prior

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["best_val_bpc"] = self.best_val
        if self.best_state is not None:
            checkpoint["best_state"] = self.best_state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best_val = float(checkpoint.get("best_val_bpc", math.inf))
        self.best_state = checkpoint.get("best_state")

    def configure_optimizers(self):
        p = self.cfg.prior.settings()  # lr, weight_decay, warmup_steps of prior.<kind>
        decay = [w for n, w in self.prior.named_parameters() if w.ndim >= 2 and "pos" not in n]
        other = [
            w for n, w in self.prior.named_parameters() if not (w.ndim >= 2 and "pos" not in n)
        ]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": p.weight_decay},
                {"params": other, "weight_decay": 0},
            ],
            lr=p.lr,
            betas=(0.9, 0.95),
        )
        factor = lr_factor(p.warmup_steps, p.schedule, self.cfg.prior.max_steps, p.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_factor(warmup: int, schedule: str, total: int, floor: float):
    """The learning rate's multiplier at each optimizer step: a linear warm-up over ``warmup``
    steps, then constant, or (``schedule`` "cosine" with a step budget ``total`` > 0) a half-cosine
    from 1 down to ``floor`` at step ``total``."""
    warm = max(1, warmup)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if schedule != "cosine" or total <= warm:
            return 1.0
        done = min(1.0, (step - warm) / (total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done))

    return factor
