"""The registry of prior kinds (torch-free): each kind's settings and ``KindSpec`` live in
brainvq/config/kinds/<kind>.py, its prior class in brainvq/priors/<kind>.py. Adding a kind: those
two modules and one line below (or ``register_kind(SPEC)`` from your own code)."""

from brainvq.config.kinds.code_prediction import CodePredictionConfig, TransformerSizes
from brainvq.config.kinds.dcgan import SPEC as DCGAN
from brainvq.config.kinds.dcgan import DCGANConfig
from brainvq.config.kinds.maskgit import SPEC as MASKGIT
from brainvq.config.kinds.maskgit import MaskGITConfig
from brainvq.config.kinds.pixelcnn import SPEC as PIXELCNN
from brainvq.config.kinds.pixelcnn import PixelCNNConfig
from brainvq.config.kinds.spec import (
    KINDS,
    KindColumn,
    KindNames,
    KindSpec,
    kind_spec,
    kinds_with,
    register_kind,
)
from brainvq.config.kinds.transformer import SPEC as TRANSFORMER
from brainvq.config.kinds.transformer import TransformerConfig

# the built-in kinds, in the order runs, reports and --help list them: one line per kind
register_kind(DCGAN)
register_kind(PIXELCNN)
register_kind(TRANSFORMER)
register_kind(MASKGIT)

PRIOR_KINDS = KindNames()  # the registered kinds' names
KIND_TEMPERATURE = KindColumn("temperature")  # {kind: temperature when prior.temperature is 0}
KIND_BATCH_SIZE = KindColumn("batch_size")  # {kind: code maps per step when prior.batch_size is 0}

__all__ = [
    "KINDS",
    "KIND_BATCH_SIZE",
    "KIND_TEMPERATURE",
    "PRIOR_KINDS",
    "CodePredictionConfig",
    "DCGANConfig",
    "KindSpec",
    "MaskGITConfig",
    "PixelCNNConfig",
    "TransformerConfig",
    "TransformerSizes",
    "kind_spec",
    "kinds_with",
    "register_kind",
]
