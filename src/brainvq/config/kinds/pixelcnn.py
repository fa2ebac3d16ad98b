"""The gated PixelCNN prior kind: its settings (prior.pixelcnn) and its spec."""

from __future__ import annotations

from dataclasses import dataclass

from brainvq.config.checks import need, positive
from brainvq.config.kinds.code_prediction import CodePredictionConfig
from brainvq.config.kinds.spec import KindSpec


@dataclass
class PixelCNNConfig(CodePredictionConfig):
    """The gated PixelCNN prior (van den Oord et al., 2016; brainvq.nn.pixelcnn)."""

    channels: int = 64
    layers: int = 10
    kernel: int = 5  # width of the vertical stack's kernel; odd, >= 3

    def validate(self, prefix: str = "prior.pixelcnn") -> None:
        """Raise ConfigError for a value that would fail later."""
        super().validate(prefix)
        positive(self, prefix, "channels", "layers")
        need(
            self.kernel >= 3 and self.kernel % 2 == 1,
            f"{prefix}.kernel",
            self.kernel,
            "must be odd and >= 3",
        )


SPEC = KindSpec(
    name="pixelcnn", title="PixelCNN", settings=PixelCNNConfig,
    prior="brainvq.priors.pixelcnn:PixelCNNPrior", temperature=1.0, batch_size=16, likelihood=True,
)  # fmt: skip
