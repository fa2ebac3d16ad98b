"""The MaskGIT prior kind: its settings (prior.maskgit) and its spec."""

from __future__ import annotations

from dataclasses import dataclass

from brainvq.config.checks import non_negative, positive
from brainvq.config.kinds.code_prediction import TransformerSizes
from brainvq.config.kinds.spec import KindSpec


@dataclass
class MaskGITConfig(TransformerSizes):
    """The masked-code transformer prior (MaskGIT, Chang et al. 2022; brainvq.nn.maskgit)."""

    # 600 steps: about 7 minutes in bf16 on 2 BF16 CPU cores, 11 in fp32 (bench/results/precision.md)
    step_budget: int = 600
    steps: int = 12  # parallel decoding steps per map
    # scale of the Gumbel noise on the confidences that choose which drawn codes to keep; it falls
    # to 0 over the steps (MaskGIT's choice temperature)
    noise: float = 4.5

    def validate(self, prefix: str = "prior.maskgit") -> None:
        """Raise ConfigError for a value that would fail later."""
        super().validate(prefix)
        positive(self, prefix, "steps")
        non_negative(self, prefix, "noise")


SPEC = KindSpec(
    name="maskgit", title="MaskGIT", settings=MaskGITConfig,
    prior="brainvq.priors.maskgit:MaskGITPrior", temperature=0.6, batch_size=16,
    loss_unit="bits/hidden code", curves="training and validation bits per hidden code",
    conditions=True, variations=True,
)  # fmt: skip
