"""The config sections other than the prior's: data, vqvae, train, tune, eval and anomaly."""

from __future__ import annotations

from dataclasses import dataclass

from brainvq.config.checks import check_subject_pattern, need, non_negative, one_of, positive


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
        positive(self, prefix, "image_size")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            need(0.0 <= value < 1.0, f"{prefix}.{name}", value, "must be in [0, 1)")
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
        need(self.downsample in (4, 8), f"{prefix}.downsample", self.downsample, "must be 4 or 8")
        positive(self, prefix, "codebook_size", "code_dim", "hidden", "res_hidden")
        positive(self, prefix, "disc_channels", "disc_layers")
        non_negative(self, prefix, "n_res_blocks", "adversarial_weight", "adversarial_start")
        non_negative(self, prefix, "disc_lr")
        need(0.0 < self.ema_decay < 1.0, f"{prefix}.ema_decay", self.ema_decay, "must be in (0, 1)")


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
        positive(self, prefix, "batch_size", "max_epochs", "devices", "num_nodes")
        need(self.lr > 0, f"{prefix}.lr", self.lr, "must be > 0")
        non_negative(self, prefix, "max_steps", "max_minutes", "weight_decay", "num_workers")
        one_of(self, prefix, "precision", ("auto", "32", "bf16", "16"))


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
        non_negative(self, prefix, "max_minutes", "max_steps", "variants", "adversarial_weight")
        need(0 < self.max_share <= 1, f"{prefix}.max_share", self.max_share, "must be in (0, 1]")
        positive(self, prefix, "batch_size")
        need(self.lr > 0, f"{prefix}.lr", self.lr, "must be > 0")

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
        positive(self, prefix, "n_samples", "batch_size", "condition_samples", "condition_steps")
        values = self.condition_values
        need(values >= 2, f"{prefix}.condition_values", values, "must be >= 2")
        g = self.condition_guidance
        need(g >= 0, f"{prefix}.condition_guidance", g, "must be >= 0")
        non_negative(self, prefix, "nn_candidates")
        need(self.c2st_folds >= 2, f"{prefix}.c2st_folds", self.c2st_folds, "must be >= 2")
        one_of(self, prefix, "reference", REFERENCE_SPLITS)


ANOMALY_PRIORS = ("transformer", "maskgit")  # the kinds anomaly maps can detect and heal with
# the detector's own threshold when anomaly.threshold is 0: MaskGIT's pseudo-likelihoods have a
# heavier tail (p < 0.01 flagged a third of the codes of healthy validation slices on the
# development run, p < 0.001 one in twenty; bench/results/anomaly.md)
ANOMALY_THRESHOLD = {"transformer": 0.01, "maskgit": 0.001}


@dataclass
class AnomalyConfig:
    """How `brainvq anomaly` makes anomaly maps (brainvq.applications.anomaly); the defaults are
    those bench/anomaly.py chose on the validation brains of the development data."""

    # which prior flags unlikely codes: transformer | maskgit; "" = the transformer where the run
    # has one, else maskgit (`brainvq anomaly --kind` sets it too, and wins)
    detect: str = ""
    heal: str = ""  # which prior redraws them: transformer | maskgit; "" = the detecting one
    threshold: float = 0.0  # codes less likely than this are redrawn; 0 = ANOMALY_THRESHOLD's
    temperature: float = 1.0  # of the redraws; 0 = the likeliest code
    maskgit_steps: int = 4  # parallel steps of a maskgit fill
    maskgit_block: int = 1  # side of the squares maskgit hides to score codes
    sigma: float = 1.0  # px: Gaussian smoothing of |slice - healed|
    top_share: float = 0.01  # the score: mean of the map's highest pixels, this share of them
    seed: int = 0

    def validate(self, prefix: str = "anomaly") -> None:
        """Raise ConfigError for a value that would fail later."""
        for name in ("detect", "heal"):
            one_of(self, prefix, name, ("", *ANOMALY_PRIORS))
        need(0 <= self.threshold <= 1, f"{prefix}.threshold", self.threshold, "must be in [0, 1]")
        need(0 < self.top_share <= 1, f"{prefix}.top_share", self.top_share, "must be in (0, 1]")
        non_negative(self, prefix, "temperature", "sigma")
        positive(self, prefix, "maskgit_steps", "maskgit_block")
