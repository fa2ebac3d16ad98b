"""Every hyperparameter in dataclasses (the original project's `Hyperparameters`), with TOML in/out.

A config has sections: `data`, `vqvae`, `train` (the VQ-VAE stage), `prior` (with one sub-section
per kind: `prior.dcgan`, `prior.pixelcnn`, `prior.transformer`, `prior.maskgit`), `tune` (decoder
tuning) and `eval`. Each value can be set in a TOML file and overridden on the command line as
`--section.key VALUE` (`--prior.maskgit.steps 8`) or `--set section.key=VALUE`. Each section
checks its own values (`validate`), next to the fields.

Config files and weight files written before the per-kind sections (flat keys such as
`prior.maskgit_steps`) still load: `LEGACY_KEYS` maps each old key to its new place. On the command
line an old key is refused with a message naming the new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from brainvq.errors import ConfigError
from brainvq.io import atomic_write_text

PRESETS = Path(__file__).parent / "configs"  # named configs: `--config quick`
PRIOR_KINDS = ("dcgan", "pixelcnn", "transformer", "maskgit")
# each kind's sampling temperature when prior.temperature is 0 (bench/results/priors.md,
# bench/results/prior_dcgan.md: the temperature at which samples came closest to the training
# slices with diversity still within 0.05 of real slices')
KIND_TEMPERATURE = {"dcgan": 0.8, "pixelcnn": 1.0, "transformer": 0.6, "maskgit": 0.6}
# code maps per step when prior.batch_size is 0
KIND_BATCH_SIZE = {"dcgan": 32, "pixelcnn": 16, "transformer": 16, "maskgit": 16}


def _need(ok: bool, name: str, value: Any, rule: str) -> None:
    """Raise ConfigError 'name = value: rule' unless ok."""
    if not ok:
        raise ConfigError(f"{name} = {value!r}: {rule}")


def _positive(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _need(value >= 1, f"{prefix}.{name}", value, "must be a positive integer")


def _non_negative(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _need(value >= 0, f"{prefix}.{name}", value, "must be >= 0")


def _one_of(section: Any, prefix: str, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(section, name)
    _need(value in choices, f"{prefix}.{name}", value, f"use {' or '.join(choices)}")


def check_subject_pattern(pattern: str, name: str = "data.subject_pattern") -> None:
    """Refuse a subject pattern that is no regular expression or has more than one group."""
    if not pattern:
        return
    try:
        groups = re.compile(pattern).groups
    except (re.error, OverflowError, RecursionError) as e:
        raise ConfigError(f"{name} = '{pattern}': not a regular expression ({e})") from None
    if groups > 1:
        raise ConfigError(
            f"{name} = '{pattern}': has {groups} groups; put one group around the subject "
            "(e.g. 'patient(\\d+)'), or none to take the whole match"
        )


@dataclass
class DataConfig:
    """Where slices come from and how they become tensors."""

    # Side of the square tensors fed to the model. Slices of another size are centre-padded to a
    # square, then resized (area averaging down, bilinear up). Must divide by vqvae.downsample.
    image_size: int = 256
    # Share of train held out for validation when a source has no validate split.
    val_fraction: float = 0.1
    # Share held out for test when a plain folder has no splits at all.
    # Splits brainvq makes keep each subject whole, and these shares count subjects.
    test_fraction: float = 0.1
    split_seed: int = 0
    # Regular expression that reads a slice's subject from its file name (else from its folders'
    # names): its one group, or without a group its whole match ("patient(\d+)"). "" = the
    # built-in names: case_NNN (OASIS keras PNGs), OAS1_NNNN (OASIS-1), sub-LABEL (BIDS).
    subject_pattern: str = ""
    # Folder for the decoded uint8 cache ("" = $BRAINVQ_CACHE or ~/.cache/brainvq).
    cache_dir: str = ""
    # A CSV of per-subject covariates (brainvq.data.covariates): a `subject` column (or OASIS-1's
    # `ID`) and any others, numbers continuous, text categorical. "" = the data folder's
    # subjects.csv where it has one; "none" = no table. A relative path is looked up from the
    # working folder, then from the data folder.
    subjects_table: str = ""

    def validate(self, prefix: str = "data") -> None:
        """Raise ConfigError for a value that would fail later."""
        _positive(self, prefix, "image_size")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            _need(0.0 <= value < 1.0, f"{prefix}.{name}", value, "must be in [0, 1)")
        check_subject_pattern(self.subject_pattern, f"{prefix}.subject_pattern")


@dataclass
class VQVAEConfig:
    """The VQ-VAE (van den Oord et al., 2017) and its vector quantizer."""

    downsample: int = 4  # 4 or 8: image side / code-map side
    hidden: int = 64  # channels in the encoder/decoder trunk
    res_hidden: int = 32  # bottleneck channels inside a ResidualBlock
    n_res_blocks: int = 2
    codebook_size: int = 512  # K
    code_dim: int = 64  # D
    beta: float = 0.25  # commitment weight (paper, eq. 3)
    ema: bool = True  # EMA codebook updates (paper, appendix A.1)
    ema_decay: float = 0.99
    # Codes whose EMA usage falls below this (in assignments per batch) are re-seeded from recent
    # encoder outputs (dead-code restart, as in Jukebox, Dhariwal et al. 2020). 0 disables.
    dead_code_threshold: float = 1.0
    kmeans_init: bool = False  # seed the codebook by k-means on the first batch (Zeghidour 2021)
    kmeans_iters: int = 10
    # Adversarial training (VQGAN, Esser et al. 2021): a patch discriminator (brainvq.nn.patchgan)
    # judges the reconstructions, and the autoencoder's hinge adversarial loss is added with this
    # weight times VQGAN's adaptive weight (the image loss's gradient norm over the adversarial
    # loss's, at the decoder's last layer). 0 = off. The discriminator is training state only.
    adversarial_weight: float = 0.0
    adversarial_start: int = 0  # training step it starts at, once the autoencoder has settled
    disc_channels: int = 64  # the discriminator's first width (doubling per layer, at most 8x)
    disc_layers: int = 3  # its stride-2 convolutions: patches of 70 px at 3, 34 at 2, 22 at 1
    disc_lr: float = 0.0  # its Adam learning rate (betas 0.5, 0.9); 0 = train.lr

    def adversarial(self) -> bool:
        """True when the VQ-VAE stage trains a discriminator."""
        return self.adversarial_weight > 0

    def validate(self, prefix: str = "vqvae") -> None:
        """Raise ConfigError for a value that would fail later."""
        _need(self.downsample in (4, 8), f"{prefix}.downsample", self.downsample, "must be 4 or 8")
        _positive(self, prefix, "codebook_size", "code_dim", "hidden", "res_hidden")
        _positive(self, prefix, "disc_channels", "disc_layers")
        _non_negative(self, prefix, "n_res_blocks", "adversarial_weight", "adversarial_start")
        _non_negative(self, prefix, "disc_lr")
        _need(
            0.0 < self.ema_decay < 1.0, f"{prefix}.ema_decay", self.ema_decay, "must be in (0, 1)"
        )


@dataclass
class TrainConfig:
    """How the VQ-VAE stage is trained (accelerator, devices and precision serve every stage)."""

    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    # budget: the stage ends at whichever of these comes first; 0 = no limit of that kind
    max_epochs: int = 1000
    # 5000 steps: about 9 minutes in bf16 on 2 BF16 CPU cores, 15 in fp32; the minutes are a cap
    max_steps: int = 5000
    max_minutes: float = 30.0  # wall-clock cap of the stage
    # Stop once the epoch's mean training loss is below this (the original's threshold); 0 = off.
    loss_threshold: float = 0.0
    # Weight of (1 - SSIM) added to the reconstruction MSE; 0 = plain MSE as in the paper.
    ssim_loss_weight: float = 0.1
    # auto | 32 | bf16 | 16; auto: each stage times fp32 and bf16 on a BF16 CPU and takes the
    # faster (brainvq.training.precision), fp32 on other CPUs, bf16 (or fp16) AMP on CUDA
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    seed: int = 0
    log_every_n_steps: int = 10
    # Also log to TensorBoard (RUN/logs/STAGE/tb/), beside the CSV log; needs `tensorboard`.
    tensorboard: bool = False
    # Diagnostic for multi-process runs: each rank writes RUN/state/STAGE/rankN.safetensors at the
    # end of training, so ranks can be checked to agree.
    save_rank_states: bool = False

    def validate(self, prefix: str = "train") -> None:
        """Raise ConfigError for a value that would fail later."""
        _positive(self, prefix, "batch_size", "max_epochs", "devices", "num_nodes")
        _need(self.lr > 0, f"{prefix}.lr", self.lr, "must be > 0")
        _non_negative(self, prefix, "max_steps", "max_minutes", "weight_decay", "num_workers")
        _one_of(self, prefix, "precision", ("auto", "32", "bf16", "16"))


@dataclass
class DCGANConfig:
    """The DCGAN prior (brainvq.nn.dcgan, brainvq.training.dcgan): the original project's prior."""

    latent_dim: int = 128  # size of the generator's noise vector
    g_channels: int = 128  # widest generator layer
    d_channels: int = 32  # narrowest discriminator layer
    # Adam learning rates: 5x DCGAN's 2e-4, for the ~2400 steps a CPU gives in minutes
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    beta1: float = 0.5  # Adam beta1, as in Radford et al. (2016)
    # How the generator makes discrete codes (see brainvq.nn.dcgan):
    #   "snap": a continuous code_dim map snapped to the nearest codebook vector, straight-through;
    #   "gumbel": logits over the K codes, straight-through Gumbel-softmax one-hot (Jang 2017);
    #   "distance": a code_dim map whose logits over the K codes are minus its squared distances
    #   to them, then as "gumbel" (no K-channel layer: 8x fewer generator FLOPs at K = 512).
    design: str = "snap"
    loss: str = "hinge"  # hinge (Lim & Ye 2017) | bce (the non-saturating loss of Goodfellow 2014)
    spectral_norm: bool = True  # spectral norm in D instead of BatchNorm (Miyato et al. 2018)
    r1_gamma: float = 0.0  # R1 gradient penalty on real inputs (Mescheder et al. 2018); 0 = off
    # minibatch standard deviation as an extra D feature against mode collapse (Karras et al. 2018)
    minibatch_std: bool = True
    # what the discriminator judges: "codes" (embedded code maps), "image" (the maps decoded by
    # the run's frozen VQ-VAE decoder, so G learns from how its codes look as a slice) or "both"
    # (one discriminator each, losses summed); judging images keeps G from collapsing
    d_input: str = "codes"
    # random whole-pixel shifts (up to 1/8 of the side) of real and generated images before the
    # image discriminator, differentiable (DiffAugment, Zhao et al. 2020), so D cannot memorise a
    # few hundred slices
    d_augment: bool = True
    # weight of the mode-seeking term (Mao et al. 2019): G is rewarded for outputs that differ as
    # their noises do, against the collapse onto a few maps; 0 = off
    mode_seeking: float = 0.5
    ema_decay: float = 0.999  # EMA of generator weights used for sampling (Karras 2018); 0 = off
    # "snap": weight of |z - sg(snap(z))|^2 pulling G's output to its code (like VQ-VAE's beta)
    commit_weight: float = 0.1
    # "snap": G's output is tanh-bounded to the codebook's per-dimension range (DCGAN's tanh
    # output), which keeps the straight-through gradient near the codebook
    tanh_output: bool = True
    gumbel_tau: float = 1.0  # "gumbel": softmax temperature
    # optimizer steps per epoch (real maps are few; an epoch is when a checkpoint is written)
    steps_per_epoch: int = 200
    # the DCGAN stage's own step budget (a step: one D and one G update) when prior.max_steps is
    # 0; prior.max_minutes stays the cap. 0 = none (the stage runs to its epochs or minutes)
    step_budget: int = 2400

    def validate(self, prefix: str = "prior.dcgan") -> None:
        """Raise ConfigError for a value that would fail later."""
        _positive(self, prefix, "latent_dim", "g_channels", "d_channels", "steps_per_epoch")
        _non_negative(self, prefix, "step_budget")
        _one_of(self, prefix, "design", ("snap", "gumbel", "distance"))
        _one_of(self, prefix, "d_input", ("codes", "image", "both"))
        _one_of(self, prefix, "loss", ("hinge", "bce"))
        _need(
            0.0 <= self.ema_decay < 1.0,
            f"{prefix}.ema_decay",
            self.ema_decay,
            "must be in [0, 1) (0 = off)",
        )
        _non_negative(self, prefix, "r1_gamma", "commit_weight", "mode_seeking")
        _need(self.gumbel_tau > 0, f"{prefix}.gumbel_tau", self.gumbel_tau, "must be > 0")
        for name in ("lr_g", "lr_d"):
            _need(getattr(self, name) > 0, f"{prefix}.{name}", getattr(self, name), "must be > 0")


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
        _need(self.lr > 0, f"{prefix}.lr", self.lr, "must be > 0")
        _non_negative(self, prefix, "weight_decay", "warmup_steps", "step_budget")
        _one_of(self, prefix, "schedule", ("constant", "cosine"))
        ratio = self.min_lr_ratio
        _need(0 <= ratio <= 1, f"{prefix}.min_lr_ratio", ratio, "must be in [0, 1]")


@dataclass
class PixelCNNConfig(CodePredictionConfig):
    """The gated PixelCNN prior (van den Oord et al., 2016; brainvq.nn.pixelcnn)."""

    channels: int = 64
    layers: int = 10
    kernel: int = 5  # width of the vertical stack's kernel; odd, >= 3

    def validate(self, prefix: str = "prior.pixelcnn") -> None:
        """Raise ConfigError for a value that would fail later."""
        super().validate(prefix)
        _positive(self, prefix, "channels", "layers")
        _need(
            self.kernel >= 3 and self.kernel % 2 == 1,
            f"{prefix}.kernel",
            self.kernel,
            "must be odd and >= 3",
        )


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
        _positive(self, prefix, "dim", "layers", "heads", "kv_heads")
        _need(
            self.dim % self.heads == 0 and self.heads % self.kv_heads == 0,
            f"{prefix}.dim/heads/kv_heads",
            f"{self.dim}/{self.heads}/{self.kv_heads}",
            "the width must divide by the heads and the heads by the key/value heads",
        )
        _need(0.0 <= self.dropout < 1.0, f"{prefix}.dropout", self.dropout, "must be in [0, 1)")


@dataclass
class TransformerConfig(TransformerSizes):
    """The decoder-only transformer prior over raster-ordered codes (brainvq.nn.transformer)."""

    # attention span in tokens (0 = every earlier token); a band (Child et al. 2019) speeds sampling
    window: int = 0

    def validate(self, prefix: str = "prior.transformer") -> None:
        """Raise ConfigError for a value that would fail later."""
        super().validate(prefix)
        _non_negative(self, prefix, "window")


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
        _positive(self, prefix, "steps")
        _non_negative(self, prefix, "noise")


@dataclass
class PriorConfig:
    """A prior over code maps (brainvq.priors): which kind, its budget and sampling, and each
    kind's own settings in its sub-section."""

    # which prior `brainvq run` and `train-prior` fit
    kind: str = "maskgit"
    batch_size: int = 0  # code maps per step; 0 = the kind's own (KIND_BATCH_SIZE)
    # budget: the stage ends at whichever of these comes first; 0 = no limit of that kind
    max_epochs: int = 1000
    max_steps: int = 0  # 0 = the kind's own, prior.KIND.step_budget
    max_minutes: float = 30.0  # wall-clock cap of the stage
    seed: int = 0
    # sampling: temperature (0 = the kind's own, KIND_TEMPERATURE) and top-k (0 = all codes)
    temperature: float = 0.0
    top_k: int = 0
    # condition maskgit and transformer priors on each slice's axial level (slice_Z in its name,
    # normalised per subject): "auto" where the training slices' levels pass the order check
    # (neighbouring Z alike; brainvq.data.levels), "on" (an error where they do not), "off"
    levels: str = "auto"
    # with levels, also condition on the code map of the slice below, so whole stacks can be drawn
    slice_below: bool = True
    # share of training maps shown without the slice below: what single slices are drawn from
    below_dropout: float = 0.5
    # a prior file of the same kind and codebook (e.g. an unconditioned RUN/prior-maskgit
    # .safetensors) whose weights a fresh stage starts from; conditions it lacks start untrained
    init: str = ""
    # covariates a maskgit or transformer prior is conditioned on (docs/conditions.md): columns
    # of data.subjects_table (names lower-cased, e.g. "cdr", "age") and the anatomy measured from
    # each slice ("brain_fraction", "ventricle_fraction"); [] = none
    conditions: list[str] = field(default_factory=list)
    # share of training maps shown with all their covariates unknown (and, independently, each
    # covariate unknown in this share): one prior then also samples unconditioned, and
    # classifier-free guidance (`brainvq sample --guidance G`) has its unconditioned path
    condition_dropout: float = 0.1
    dcgan: DCGANConfig = field(default_factory=DCGANConfig)
    pixelcnn: PixelCNNConfig = field(default_factory=PixelCNNConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    maskgit: MaskGITConfig = field(default_factory=MaskGITConfig)

    def validate(self, prefix: str = "prior") -> None:
        """Raise ConfigError for a value that would fail later (every kind's section too)."""
        _one_of(self, prefix, "kind", PRIOR_KINDS)
        _one_of(self, prefix, "levels", ("auto", "on", "off"))
        dropout = self.below_dropout
        _need(0 <= dropout < 1, f"{prefix}.below_dropout", dropout, "must be in [0, 1)")
        dropout = self.condition_dropout
        _need(0 <= dropout < 1, f"{prefix}.condition_dropout", dropout, "must be in [0, 1)")
        for name in self.conditions:
            _need(
                bool(re.fullmatch(r"[a-z0-9_]+", name)) and name not in ("level", "below"),
                f"{prefix}.conditions",
                self.conditions,
                "name covariates in lower case (a table column as brainvq names it, e.g. "
                "'cdr', or 'ventricle_fraction'); the axial level is prior.levels",
            )
        _need(
            len(set(self.conditions)) == len(self.conditions),
            f"{prefix}.conditions",
            self.conditions,
            "names a covariate twice",
        )
        _positive(self, prefix, "max_epochs")
        _non_negative(
            self, prefix, "batch_size", "max_steps", "max_minutes", "temperature", "top_k"
        )
        for kind in PRIOR_KINDS:
            getattr(self, kind).validate(f"{prefix}.{kind}")

    def settings(self) -> Any:
        """The section of the configured kind (prior.<kind>)."""
        return getattr(self, self.kind)

    def sampling_temperature(self) -> float:
        """The temperature samples are drawn at by default: prior.temperature, or if that is 0
        the kind's own (KIND_TEMPERATURE)."""
        return self.temperature or KIND_TEMPERATURE[self.kind]

    def step_budget(self) -> int:
        """The stage's step budget: prior.max_steps, or if that is 0 the kind's own
        (prior.KIND.step_budget; 0 = none)."""
        return self.max_steps or self.settings().step_budget

    def step_batch_size(self) -> int:
        """Code maps per step: prior.batch_size, or if that is 0 the kind's own."""
        return self.batch_size or KIND_BATCH_SIZE[self.kind]


@dataclass
class TuneConfig:
    """Decoder tuning (brainvq.training.decoder): a copy of the VQ-VAE decoder tuned to turn code
    maps with a share redrawn by a MaskGIT prior back into the real slices."""

    # budget: whichever comes first; `brainvq run` skips tuning when both are 0
    max_minutes: float = 3.0
    max_steps: int = 0
    max_share: float = 0.5  # largest share of a map redrawn by the prior
    variants: int = 3  # redrawn copies of the training maps, drawn once
    lr: float = 2e-4
    batch_size: int = 16
    seed: int = 0
    # tuned samples may be at most this much more alike (mean pairwise SSIM of 16 samples) than
    # with the VQ-VAE's decoder, else the tuned decoder is not kept: a decoder tuned to a weak
    # prior's slips can learn to draw one average slice for every map
    max_diversity_rise: float = 0.05
    # Keep training against a patch discriminator while tuning (as the VQ-VAE stage does with
    # vqvae.adversarial_weight; the same adaptive weight, sizes vqvae.disc_*): this weight times
    # the adaptive one; 0 = the image loss alone. The discriminator starts from the VQ-VAE
    # stage's (RUN/state/vqvae/last.ckpt) where that stage trained one, else afresh.
    adversarial_weight: float = 0.0

    def validate(self, prefix: str = "tune") -> None:
        """Raise ConfigError for a value that would fail later."""
        _non_negative(self, prefix, "max_minutes", "max_steps", "variants", "adversarial_weight")
        _need(0 < self.max_share <= 1, f"{prefix}.max_share", self.max_share, "must be in (0, 1]")
        _positive(self, prefix, "batch_size")
        _need(self.lr > 0, f"{prefix}.lr", self.lr, "must be > 0")

    def enabled(self) -> bool:
        """True when a budget is set (`brainvq run` tunes only then)."""
        return self.max_minutes > 0 or self.max_steps > 0


REFERENCE_SPLITS = ("test", "validate")  # what eval.reference may name


@dataclass
class EvalConfig:
    """What `evaluate` measures."""

    n_samples: int = 100
    batch_size: int = 64
    # NN-SSIM compares each image exactly with its this-many nearest training slices in L2
    # distance (0 = with every training slice; exhaustive but slow on full OASIS).
    nn_candidates: int = 128
    seed: int = 0  # seed of the samples that evaluate draws (and of the C2ST classifier)
    # the real slices samples are scored against: "test", or "validate" to choose sampling
    # settings on the validation subjects and keep the test subjects for one final score
    reference: str = "test"
    # Classifier two-sample tests (brainvq.evaluation.c2st): of the reconstructions and of each
    # prior's samples against the real reference slices (full resolution and 2x2-averaged), and
    # the prior's own test, its samples against the decoder's reconstructions of the reference
    # slices beside reconstructions of validation vs test brains (pools 1, 2, 4;
    # brainvq.evaluation.prior_test): a small CNN trained fresh per fold; about a minute per pool
    # on 2 CPU cores for a few hundred slices. false: none of them.
    c2st: bool = True
    # folds of the C2ST (at most the number of reference brains: folds keep each brain whole)
    c2st_folds: int = 5
    # Conditioning fidelity of a prior trained with prior.conditions (brainvq.evaluation
    # .conditioning): samples drawn per covariate, spread over this many asked values (anatomy:
    # between the training slices' 5th and 95th percentile; a table covariate: over its classes),
    # at this guidance scale; the steps of the classifier that reads a table covariate
    condition_samples: int = 40
    condition_values: int = 5
    condition_guidance: float = 1.0
    condition_steps: int = 600

    def validate(self, prefix: str = "eval") -> None:
        """Raise ConfigError for a value that would fail later."""
        _positive(self, prefix, "n_samples", "batch_size", "condition_samples", "condition_steps")
        values = self.condition_values
        _need(values >= 2, f"{prefix}.condition_values", values, "must be >= 2")
        g = self.condition_guidance
        _need(g >= 0, f"{prefix}.condition_guidance", g, "must be >= 0")
        _non_negative(self, prefix, "nn_candidates")
        _need(self.c2st_folds >= 2, f"{prefix}.c2st_folds", self.c2st_folds, "must be >= 2")
        _one_of(self, prefix, "reference", REFERENCE_SPLITS)


def _old_prior_keys() -> dict[str, tuple[str, ...]]:
    """Flat prior.* keys of configs written before the per-kind sections -> their new places."""
    legacy: dict[str, tuple[str, ...]] = {
        f"prior.{f.name}": (f"prior.dcgan.{f.name}",) for f in fields(DCGANConfig)
    }
    shared = ("pixelcnn", "transformer", "maskgit")
    for name in ("lr", "weight_decay", "warmup_steps"):
        legacy[f"prior.{name}"] = tuple(f"prior.{k}.{name}" for k in shared)
    legacy["prior.dropout"] = ("prior.transformer.dropout", "prior.maskgit.dropout")
    for name in ("channels", "layers", "kernel"):
        legacy[f"prior.pixelcnn_{name}"] = (f"prior.pixelcnn.{name}",)
    for name in ("dim", "layers", "heads", "kv_heads"):
        legacy[f"prior.transformer_{name}"] = (f"prior.transformer.{name}", f"prior.maskgit.{name}")
    legacy["prior.transformer_window"] = ("prior.transformer.window",)
    legacy["prior.maskgit_steps"] = ("prior.maskgit.steps",)
    legacy["prior.maskgit_noise"] = ("prior.maskgit.noise",)
    legacy["prior.tune_decoder_minutes"] = ("tune.max_minutes",)
    return legacy


LEGACY_KEYS = _old_prior_keys()


@dataclass
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> Config:
        """Check values that would fail later; raise ConfigError naming the setting."""
        for name, value in _leaves(self):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} = {value}: must be a finite number")
        for section in fields(self):
            getattr(self, section.name).validate()
        d, v = self.data, self.vqvae
        if d.image_size < v.downsample or d.image_size % v.downsample:
            raise ConfigError(
                f"data.image_size = {d.image_size} is not divisible by vqvae.downsample = "
                f"{v.downsample}: pick a multiple of {v.downsample} (e.g. 128 or 256)"
            )
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict of every value."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML text."""
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        """Write the config to a TOML file atomically."""
        atomic_write_text(Path(path), self.to_toml())

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> Config:
        """Build a config from a nested dict; unknown sections or keys are errors. Keys of older
        brainvq versions (LEGACY_KEYS) are read into their new places."""
        cfg = cls()
        for dotted, value in _flatten(raw, source):
            for target in LEGACY_KEYS.get(dotted, (dotted,)):
                _set_value(cfg, target, value, source)
        return cfg.validate()

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a TOML file, or a preset by name (`quick`: PRESETS/quick.toml); raise ConfigError
        for a missing file, bad TOML or unknown keys."""
        path = Path(path)
        if not path.exists() and (PRESETS / f"{path}.toml").exists():
            path = PRESETS / f"{path}.toml"
        try:
            # bytes, not read_text: newline translation would turn a lone CR (invalid TOML) into
            # a line break and accept a file that TOML itself refuses
            raw = tomllib.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
        return cls.from_dict(raw, source=str(path))

    def budget_assignments(
        self, sections: tuple[str, ...], max_steps: int | None, max_minutes: float | None
    ) -> list[str]:
        """`section.max_steps=N` / `section.max_minutes=M` for each budgeted section given (train,
        prior, tune), for `override`; None leaves a key as it is. Decoder tuning is left off where
        it would otherwise be enabled by the new budget (``tune`` with no budget means: no tuning),
        unless it is the only section given."""
        out = []
        for section in sections:
            if section == "tune" and len(sections) > 1 and not self.tune.enabled():
                continue
            for key, value in (("max_steps", max_steps), ("max_minutes", max_minutes)):
                if value is not None:
                    out.append(f"{section}.{key}={value}")
        return out

    def override(self, assignments: list[str]) -> Config:
        """Apply `section.key=value` strings (values parsed as TOML, else taken as strings)."""
        for item in assignments:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: write it as section.key=value")
            dotted, text = (part.strip() for part in item.split("=", 1))
            if dotted.count(".") < 1:
                raise ConfigError(f"override {item!r}: the key must be section.key, e.g. vqvae.K")
            if dotted in LEGACY_KEYS:
                new = " and ".join(f"--{k}" for k in LEGACY_KEYS[dotted])
                raise ConfigError(f"--{dotted} is an old key: use {new}")
            _set_value(self, dotted, _parse_scalar(text), "command line")
        return self.validate()


# the config sections whose budget a command's --max-steps / --max-minutes set
BUDGET_SECTIONS = {"train-vqvae": ("train",), "train-prior": ("prior",), "tune-decoder": ("tune",)}
BUDGET_SECTIONS["run"] = ("train", "prior", "tune")
BUDGET_HELP = (
    "0 = none. A stage ends at whichever of its steps, epochs and minutes comes first and says "
    "which (steps: at the same point on any machine); given a larger budget it goes on"
)


def command_config(preset: str | None, run: str | None) -> Config:
    """A command's starting config: --config FILE (or a preset name), else the run's own
    config.toml where the run exists (so repeating a command on a run asks the same of it), else
    the defaults."""
    own = Path(run, "config.toml") if run else None
    base = preset or (own if own and own.is_file() else None)
    return Config.load(base) if base else Config()


# the train.* keys that serve every training stage: a prior stage takes these from its command
# line, the rest of `train` from the run (its budget and batch come from `prior`)
STAGE_TRAIN_KEYS = tuple(
    f"train.{k}"
    for k in ("accelerator", "devices", "num_nodes", "precision", "tensorboard", "save_rank_states")
)


def _in_scope(dotted: str, accepted: tuple[str, ...]) -> bool:
    return any(dotted == a or dotted.startswith(a + ".") for a in accepted)


def scope_help(accepted: tuple[str, ...]) -> str:
    """The settings a scope covers, for --help: 'eval.n_samples, eval.batch_size, ...' (each
    key of a flat section), 'prior.KEY, prior.KIND.KEY' (a section with sub-sections), or the
    keys named."""
    out = []
    for item in accepted:
        if "." in item:
            out.append(item)
            continue
        section = getattr(Config(), item)
        keys = [f.name for f in fields(section)]
        if any(dataclasses.is_dataclass(getattr(section, k)) for k in keys):
            out.append(f"{item}.KEY, {item}.KIND.KEY")
        else:
            out += [f"{item}.{k}" for k in keys]
    return ", ".join(out)


def check_scope(assignments: list[str], accepted: tuple[str, ...] | None, command: str) -> None:
    """Refuse `section.key=value` overrides that ``command`` would not read: ``accepted`` names
    the sections ("eval") and keys ("train.devices") it uses; None = every one, () = none."""
    if accepted is None:
        return
    for item in assignments:
        dotted = item.split("=", 1)[0].strip()
        if _in_scope(dotted, accepted):
            continue
        if not accepted:
            raise ConfigError(f"--{dotted}: {command} takes no config values; see its --help")
        names = ", ".join(a if "." in a else f"{a}.*" for a in accepted)
        raise ConfigError(f"--{dotted}: {command} does not use it (it takes {names})")


def assignments_from_args(args: list[str]) -> list[str]:
    """Command-line `--section.key VALUE` / `--section.key=VALUE` as `section.key=VALUE` strings."""
    out, i = [], 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or "." not in tok.split("=")[0]:
            raise ConfigError(f"unknown argument {tok!r} (config values are --SECTION.KEY VALUE)")
        if "=" in tok:
            out.append(tok[2:])
            i += 1
        elif i + 1 < len(args):
            out.append(f"{tok[2:]}={args[i + 1]}")
            i += 2
        else:
            raise ConfigError(f"{tok} needs a value")
    return out


def number_arg(low: float, high: float = math.inf, closed_low: bool = False):
    """Command-line type (argparse): a number in (low, high] ([low, high] with closed_low)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not ((value >= low if closed_low else value > low) and value <= high):
            bound = f"{'>=' if closed_low else '>'} {low:g}"
            bound += f" and <= {high:g}" if high < math.inf else ""
            raise argparse.ArgumentTypeError(f"{text!r}: must be a number {bound}")
        return value

    return parse


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, value) of every setting under a config or section."""
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        out += _leaves(value, name + ".") if dataclasses.is_dataclass(value) else [(name, value)]
    return out


def _flatten(raw: dict[str, Any], source: str, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested TOML dict as (dotted key, value) pairs."""
    out = []
    for key, value in raw.items():
        if isinstance(value, dict):
            out += _flatten(value, source, f"{prefix}{key}.")
        elif not prefix:
            raise ConfigError(f"{source}: {key} = {value!r} must sit in a [section]")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _parse_scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_value(cfg: Config, dotted: str, value: Any, source: str) -> None:
    """Set the setting named like `prior.maskgit.steps`, converting and checking its type."""
    *path, key = dotted.split(".")
    sub: Any = cfg
    for depth, part in enumerate(path):
        known = {f.name for f in fields(sub) if dataclasses.is_dataclass(getattr(sub, f.name))}
        if part not in known:
            where = ".".join(path[:depth]) or "sections"
            raise ConfigError(
                f"{source}: unknown section {'.'.join(path[: depth + 1])}; known {where}: "
                f"{', '.join(sorted(known))}"
            )
        sub = getattr(sub, part)
    section = ".".join(path)
    known_keys = {f.name for f in fields(sub)}
    if key not in known_keys:
        raise ConfigError(
            f"{source}: unknown key {dotted}; known keys of [{section}]: "
            f"{', '.join(sorted(known_keys))}"
        )
    default = getattr(type(sub)(), key)
    if dataclasses.is_dataclass(default):
        raise ConfigError(f"{source}: {dotted} is a section; set {dotted}.KEY")
    setattr(sub, key, _convert(default, value, f"{source}: {dotted}"))


def _convert(default: Any, value: Any, name: str) -> Any:
    """value as the type of default, or ConfigError."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            value = value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} must be true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} = {value!r} must be an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} = {value!r} must be a number")
        value = float(value)
    elif kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} must be a string")
        value = str(value)
    elif kind is list:  # a list of names: ["cdr", "age"], or "cdr,age" on the command line
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f'{name} = {value!r} must be a list of names, e.g. ["cdr"]')
        value = list(value)
    return value
