"""The raster-order transformer prior kind: its settings (prior.transformer) and spec."""

from __future__ import annotations

from dataclasses import dataclass

from brainvq.config.checks import non_negative
from brainvq.config.kinds.code_prediction import TransformerSizes
from brainvq.config.kinds.spec import KindSpec


@dataclass
class TransformerConfig(TransformerSizes):
    """The decoder-only transformer prior over raster-ordered codes (brainvq.nn.transformer)."""

    # attention span in tokens (0 = every earlier token); a band (Child et al. 2019) speeds sampling
    window: int = 0

    def validate(self, prefix: str = "prior.transformer") -> None:
        """Raise ConfigError for a value that would fail later."""
        super().validate(prefix)
        non_negative(self, prefix, "window")


SPEC = KindSpec(
    name="transformer", title="transformer", settings=TransformerConfig,
    prior="brainvq.priors.transformer:TransformerPrior", temperature=0.6, batch_size=16,
    likelihood=True, conditions=True,
)  # fmt: skip
