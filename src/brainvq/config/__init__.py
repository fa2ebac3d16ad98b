"""Every hyperparameter in dataclasses (the original project's `Hyperparameters`), with TOML in/out.

A config has sections: `data`, `vqvae`, `train` (the VQ-VAE stage), `prior` (with one sub-section
per prior kind: `prior.dcgan`, `prior.pixelcnn`, `prior.transformer`, `prior.maskgit`), `tune`
(decoder tuning), `eval` and `anomaly`. Each value can be set in a TOML file and overridden on the
command line as `--section.key VALUE` (`--prior.maskgit.steps 8`) or `--set section.key=VALUE`.
Each section checks its own values (`validate`), next to the fields.

The package's modules: ``sections`` (data, vqvae, train, tune, eval, anomaly), ``prior`` (the prior
section), ``kinds`` (the registry of prior kinds: each kind's settings and ``KindSpec``, torch-free),
``schema`` (``Config``: TOML in and out, overrides), ``legacy`` (keys of older versions,
``LEGACY_KEYS``), ``command_line`` (a command's config, scopes, `--section.key` arguments) and
``checks`` (the validation helpers).
"""

from brainvq.config.checks import check_subject_pattern
from brainvq.config.command_line import (
    BUDGET_HELP,
    BUDGET_SECTIONS,
    STAGE_TRAIN_KEYS,
    assignments_from_args,
    check_scope,
    command_config,
    number_arg,
    scope_help,
)
from brainvq.config.kinds import (
    KIND_BATCH_SIZE,
    KIND_TEMPERATURE,
    KINDS,
    PRIOR_KINDS,
    CodePredictionConfig,
    DCGANConfig,
    KindColumn,
    KindNames,
    KindSpec,
    MaskGITConfig,
    PixelCNNConfig,
    TransformerConfig,
    TransformerSizes,
    kind_spec,
    kinds_with,
    register_kind,
)
from brainvq.config.legacy import LEGACY_KEYS
from brainvq.config.prior import PriorConfig
from brainvq.config.schema import (  # Config and its sections
    PRESETS,
    AnomalyConfig,
    Config,
    DataConfig,
    EvalConfig,
    TrainConfig,
    TuneConfig,
    VQVAEConfig,
)
from brainvq.config.sections import ANOMALY_PRIORS, ANOMALY_THRESHOLD, REFERENCE_SPLITS
from brainvq.errors import ConfigError

__all__ = [
    "ANOMALY_PRIORS",
    "ANOMALY_THRESHOLD",
    "BUDGET_HELP",
    "BUDGET_SECTIONS",
    "KINDS",
    "KIND_BATCH_SIZE",
    "KIND_TEMPERATURE",
    "LEGACY_KEYS",
    "PRESETS",
    "PRIOR_KINDS",
    "REFERENCE_SPLITS",
    "STAGE_TRAIN_KEYS",
    "AnomalyConfig",
    "CodePredictionConfig",
    "Config",
    "ConfigError",
    "DCGANConfig",
    "DataConfig",
    "EvalConfig",
    "KindColumn",
    "KindNames",
    "KindSpec",
    "MaskGITConfig",
    "PixelCNNConfig",
    "PriorConfig",
    "TrainConfig",
    "TransformerConfig",
    "TransformerSizes",
    "TuneConfig",
    "VQVAEConfig",
    "assignments_from_args",
    "check_scope",
    "check_subject_pattern",
    "command_config",
    "kind_spec",
    "kinds_with",
    "number_arg",
    "register_kind",
    "scope_help",
]
