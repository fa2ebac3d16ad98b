"""The settings shared by the priors trained by predicting codes (brainvq.training.code_prior)."""

from __future__ import annotations

from dataclasses import dataclass

from brainvq.config.checks import need, non_negative, one_of, positive


@dataclass
class CodePredictionConfig:
    """What the priors trained by predicting codes share: AdamW with a linear warm-up; the weights
    with the lowest validation bits per code are the ones kept."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    # the stage's own step budget when prior.max_steps is 0 (prior.max_minutes stays the cap);
    # 0 = none: the stage runs to its epochs or minutes
    step_budget: int = 0
    # after the warm-up: "constant", or "cosine" decay to lr * min_lr_ratio at prior.max_steps
    # (Loshchilov & Hutter 2017; needs a step budget: under a minutes cap alone it stays constant)
    schedule: str = "constant"
    min_lr_ratio: float = 0.1

    def validate(self, prefix: str) -> None:
        """Raise ConfigError for a value that would fail later."""
        need(self.lr > 0, f"{prefix}.lr", self.lr, "must be > 0")
        non_negative(self, prefix, "weight_decay", "warmup_steps", "step_budget")
        one_of(self, prefix, "schedule", ("constant", "cosine"))
        ratio = self.min_lr_ratio
        need(0 <= ratio <= 1, f"{prefix}.min_lr_ratio", ratio, "must be in [0, 1]")


@dataclass
class TransformerSizes(CodePredictionConfig):
    """Sizes of a transformer over code maps."""

    dim: int = 128
    layers: int = 4
    heads: int = 4
    # key/value heads: 1 = multi-query attention (Shazeer 2019), = heads: plain multi-head; fewer
    # key/value heads make each cached sampling step read less memory
    kv_heads: int = 1
    dropout: float = 0.0  # residual dropout; CPU budgets underfit rather than overfit

    def validate(self, prefix: str) -> None:
        """Raise ConfigError for a value that would fail later."""
        super().validate(prefix)
        positive(self, prefix, "dim", "layers", "heads", "kv_heads")
        need(
            self.dim % self.heads == 0 and self.heads % self.kv_heads == 0,
            f"{prefix}.dim/heads/kv_heads",
            f"{self.dim}/{self.heads}/{self.kv_heads}",
            "the width must divide by the heads and the heads by the key/value heads",
        )
        need(0.0 <= self.dropout < 1.0, f"{prefix}.dropout", self.dropout, "must be in [0, 1)")
