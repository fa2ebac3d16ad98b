"""Every hyperparameter in dataclasses (the original project's `Hyperparameters`), with TOML in/out.

A config has sections (`data`, `vqvae`, `train`, `prior`, `eval`); each value can be set in a TOML
file and overridden on the command line as `--section.key VALUE` (or `--set section.key=VALUE`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from brainvq.errors import ConfigError

PRIOR_KINDS = ("dcgan", "pixelcnn", "transformer", "maskgit")
# each kind's sampling temperature when prior.temperature is 0: at 0.6 the transformer and maskgit
# samples were closer to the training slices and nearer real slices in diversity than at 1.0,
# where they were noisier and less alike than real slices (bench/results/priors.md); the gumbel
# DCGAN's samples at 0.8 were closer to the training slices with diversity still within 0.03 of
# real slices' (0.7 reached 0.05; bench/results/prior_dcgan.md); pixelcnn was not measured below 1
KIND_TEMPERATURE = {"dcgan": 0.8, "pixelcnn": 1.0, "transformer": 0.6, "maskgit": 0.6}


@dataclass
class DataConfig:
    """Where slices come from and how they become tensors."""

    # Side of the square tensors fed to the model. Slices of another size are centre-padded to a
    # square, then resized (area averaging down, bilinear up). Must divide by vqvae.downsample.
    image_size: int = 256
    # Share of train held out for validation when a source has no validate split.
    val_fraction: float = 0.1
    # Share held out for test when a plain folder has no splits at all.
    test_fraction: float = 0.1
    split_seed: int = 0
    # Folder for the decoded uint8 cache ("" = $BRAINVQ_CACHE or ~/.cache/brainvq).
    cache_dir: str = ""


@dataclass
class VQVAEConfig:
    """The VQ-VAE (van den Oord et al., 2017) and its vector quantizer."""

    downsample: int = 4  # 4 or 8: image side / code-map side
    hidden: int = 64  # channels in the encoder/decoder trunk (bench/sweep_vqvae.py chose 64)
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


@dataclass
class TrainConfig:
    """How a stage is trained."""

    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 1000
    max_minutes: float = 15.0  # wall-clock budget for the stage; 0 = no budget
    # Stop once the epoch's mean training loss is below this (the original's threshold); 0 = off.
    loss_threshold: float = 0.0
    # Weight of (1 - SSIM) added to the reconstruction MSE; 0 = plain MSE as in the paper.
    ssim_loss_weight: float = 0.1
    precision: str = "auto"  # auto | 32 | bf16 | 16 (auto: bf16 on BF16 CPUs, 16-mixed on CUDA)
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


@dataclass
class PriorConfig:
    """A prior over code maps (see brainvq.priors)."""

    # which prior `brainvq run` and `train-prior` fit: maskgit gave the most realistic and the
    # most real-like varied samples at the same CPU budget (bench/results/priors.md); the
    # transformer is the one with a likelihood (`brainvq score`) and samples 5x faster
    kind: str = "maskgit"
    # code maps per step; 0 = the kind's own default: 64 for dcgan, 16 for pixelcnn/transformer
    # (the autoregressive priors learn faster per CPU-minute from more, smaller steps)
    batch_size: int = 0
    max_minutes: float = 10.0  # wall-clock budget of the prior stage; 0 = no budget
    max_epochs: int = 1000
    seed: int = 0
    # DCGAN
    latent_dim: int = 128  # size of the generator's noise vector
    g_channels: int = 256  # widest generator layer
    d_channels: int = 64  # narrowest discriminator layer
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5  # Adam beta1, as in Radford et al. (2016)
    # How the generator makes discrete codes (see brainvq.nn.dcgan):
    #   "snap": a continuous code_dim map snapped to the nearest codebook vector, straight-through;
    #   "gumbel": logits over the K codes, straight-through Gumbel-softmax one-hot (Jang 2017).
    # Measured on bench-vqvae (bench/results/prior_dcgan.md): gumbel beat snap on every measure.
    design: str = "gumbel"
    loss: str = "hinge"  # hinge (Lim & Ye 2017) | bce (the non-saturating loss of Goodfellow 2014)
    spectral_norm: bool = True  # spectral norm in D instead of BatchNorm (Miyato et al. 2018)
    r1_gamma: float = 0.0  # R1 gradient penalty on real inputs (Mescheder et al. 2018); 0 = off
    # minibatch standard deviation as an extra D feature against mode collapse (Karras et al. 2018)
    minibatch_std: bool = True
    # what the DCGAN discriminator judges: "codes" (embedded code maps), "image" (the maps decoded
    # by the run's frozen VQ-VAE decoder, so G learns from how its codes look as a slice) or "both"
    # (one discriminator each, losses summed). Measured on an H100 (bench/results/prior_dcgan.md):
    # "both" gave the most realistic samples, and either image variant ended the mode collapse
    # that "codes" alone showed (diversity within 0.01 of real slices' against 0.10 above)
    d_input: str = "both"
    # random whole-pixel shifts (up to 1/8 of the side) of real and generated images before the
    # image discriminator, differentiable (DiffAugment, Zhao et al. 2020), so D cannot memorise a
    # few hundred slices
    d_augment: bool = True
    ema_decay: float = 0.999  # EMA of generator weights used for sampling (Karras 2018); 0 = off
    # "snap": weight of |z - sg(snap(z))|^2 pulling G's output to its code (like VQ-VAE's beta)
    commit_weight: float = 0.1
    # "snap": G's output is tanh-bounded to the codebook's per-dimension range (DCGAN's tanh
    # output); unbounded, the straight-through gradient drove it far off the codebook (bench).
    tanh_output: bool = True
    gumbel_tau: float = 1.0  # "gumbel": softmax temperature
    # DCGAN optimizer steps per epoch (real maps are few; an epoch is when a checkpoint is written)
    steps_per_epoch: int = 200
    # autoregressive priors (pixelcnn, transformer): AdamW, linear warm-up, the weights with the
    # lowest validation bits/code are the ones kept
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    dropout: float = 0.0  # residual dropout of the transformer; CPU budgets underfit, not overfit
    pixelcnn_channels: int = 64
    pixelcnn_layers: int = 10
    pixelcnn_kernel: int = 5  # width of the vertical stack's kernel; odd, >= 3
    # the transformer_* sizes serve both the transformer and maskgit priors
    transformer_dim: int = 128
    transformer_layers: int = 4
    transformer_heads: int = 4
    # key/value heads: 1 = multi-query attention (Shazeer 2019), = heads: plain multi-head; fewer
    # key/value heads make each cached sampling step read less memory
    transformer_kv_heads: int = 1
    # attention span in tokens (0 = every earlier token); a band (Child et al. 2019) speeds sampling
    transformer_window: int = 0
    # maskgit: parallel decoding steps per map, and the scale of the Gumbel noise on the
    # confidences that choose which drawn codes to keep (falls to 0 over the steps; Chang 2022)
    maskgit_steps: int = 12
    maskgit_noise: float = 4.5
    # `brainvq run` with a maskgit prior: minutes of tuning a decoder copy to the prior's samples
    # (brainvq.decoder_tuning, as `brainvq tune-decoder`); 0 = skip
    tune_decoder_minutes: float = 3.0
    # sampling (autoregressive priors and the gumbel DCGAN): temperature (0 = the kind's own,
    # KIND_TEMPERATURE) and top-k (0 = all codes)
    temperature: float = 0.0
    top_k: int = 0

    def sampling_temperature(self) -> float:
        """The temperature samples are drawn at by default: prior.temperature, or if that is 0
        the kind's own (KIND_TEMPERATURE)."""
        return self.temperature or KIND_TEMPERATURE[self.kind]


@dataclass
class EvalConfig:
    """What `evaluate` measures."""

    n_samples: int = 100
    batch_size: int = 64
    # NN-SSIM compares each image exactly with its this-many nearest training slices in L2
    # distance (0 = with every training slice; exhaustive but slow on full OASIS).
    nn_candidates: int = 128
    seed: int = 0  # seed of the samples that evaluate draws


@dataclass
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> Config:
        """Check values that would fail later; raise ConfigError naming the setting."""
        v, d, t = self.vqvae, self.data, self.train
        for section in fields(self):
            sub = getattr(self, section.name)
            for f in fields(sub):
                value = getattr(sub, f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f"{section.name}.{f.name} = {value}: must be a finite number")
        if v.downsample not in (4, 8):
            raise ConfigError(f"vqvae.downsample = {v.downsample}: must be 4 or 8")
        for name in ("codebook_size", "code_dim", "hidden", "res_hidden"):
            if getattr(v, name) < 1:
                raise ConfigError(f"vqvae.{name} = {getattr(v, name)}: must be a positive integer")
        if v.n_res_blocks < 0:
            raise ConfigError(f"vqvae.n_res_blocks = {v.n_res_blocks}: must be >= 0")
        if not 0.0 < v.ema_decay < 1.0:
            raise ConfigError(f"vqvae.ema_decay = {v.ema_decay}: must be between 0 and 1")
        if d.image_size < v.downsample or d.image_size % v.downsample:
            raise ConfigError(
                f"data.image_size = {d.image_size} is not divisible by vqvae.downsample = "
                f"{v.downsample}: pick a multiple of {v.downsample} (e.g. 128 or 256)"
            )
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(d, name) < 1.0:
                raise ConfigError(f"data.{name} = {getattr(d, name)}: must be in [0, 1)")
        if t.batch_size < 1:
            raise ConfigError(f"train.batch_size = {t.batch_size}: must be >= 1")
        if t.lr <= 0:
            raise ConfigError(f"train.lr = {t.lr}: must be > 0")
        if t.max_minutes < 0:
            raise ConfigError(f"train.max_minutes = {t.max_minutes}: must be >= 0 (0 = no budget)")
        if t.precision not in ("auto", "32", "bf16", "16"):
            raise ConfigError(f"train.precision = {t.precision!r}: use auto, 32, bf16 or 16")
        p = self.prior
        if p.kind not in PRIOR_KINDS:
            raise ConfigError(f"prior.kind = {p.kind!r}: use one of {', '.join(PRIOR_KINDS)}")
        if p.batch_size < 0:
            raise ConfigError(f"prior.batch_size = {p.batch_size}: must be >= 1 (0 = the default)")
        for name in ("latent_dim", "g_channels", "d_channels"):
            if getattr(p, name) < 1:
                raise ConfigError(f"prior.{name} = {getattr(p, name)}: must be >= 1")
        if p.max_minutes < 0:
            raise ConfigError(f"prior.max_minutes = {p.max_minutes}: must be >= 0 (0 = no budget)")
        if p.design not in ("snap", "gumbel"):
            raise ConfigError(f"prior.design = {p.design!r}: use snap or gumbel")
        if p.d_input not in ("codes", "image", "both"):
            raise ConfigError(f"prior.d_input = {p.d_input!r}: use codes, image or both")
        if p.loss not in ("hinge", "bce"):
            raise ConfigError(f"prior.loss = {p.loss!r}: use hinge or bce")
        if not 0.0 <= p.ema_decay < 1.0:
            raise ConfigError(f"prior.ema_decay = {p.ema_decay}: must be in [0, 1) (0 = off)")
        for name in ("r1_gamma", "commit_weight"):
            if getattr(p, name) < 0:
                raise ConfigError(f"prior.{name} = {getattr(p, name)}: must be >= 0")
        if p.gumbel_tau <= 0:
            raise ConfigError(f"prior.gumbel_tau = {p.gumbel_tau}: must be > 0")
        if p.steps_per_epoch < 1:
            raise ConfigError(f"prior.steps_per_epoch = {p.steps_per_epoch}: must be >= 1")
        for name in (
            "pixelcnn_channels",
            "pixelcnn_layers",
            "transformer_dim",
            "transformer_layers",
            "transformer_heads",
            "transformer_kv_heads",
            "maskgit_steps",
        ):
            if getattr(p, name) < 1:
                raise ConfigError(f"prior.{name} = {getattr(p, name)}: must be >= 1")
        if p.tune_decoder_minutes < 0:
            raise ConfigError(
                f"prior.tune_decoder_minutes = {p.tune_decoder_minutes}: must be >= 0 (0 = skip)"
            )
        if p.maskgit_noise < 0:
            raise ConfigError(f"prior.maskgit_noise = {p.maskgit_noise}: must be >= 0")
        if p.pixelcnn_kernel < 3 or p.pixelcnn_kernel % 2 == 0:
            raise ConfigError(f"prior.pixelcnn_kernel = {p.pixelcnn_kernel}: must be odd and >= 3")
        heads, kv = p.transformer_heads, p.transformer_kv_heads
        if p.transformer_dim % heads or heads % kv:
            raise ConfigError(
                f"prior.transformer_dim/heads/kv_heads = {p.transformer_dim}/{heads}/{kv}: the "
                "width must divide by the heads and the heads by the key/value heads"
            )
        if p.lr <= 0:
            raise ConfigError(f"prior.lr = {p.lr}: must be > 0")
        for name in ("temperature", "weight_decay", "warmup_steps", "top_k", "transformer_window"):
            if getattr(p, name) < 0:
                raise ConfigError(f"prior.{name} = {getattr(p, name)}: must be >= 0")
        if not 0.0 <= p.dropout < 1.0:
            raise ConfigError(f"prior.dropout = {p.dropout}: must be in [0, 1)")
        if self.eval.n_samples < 1:
            raise ConfigError(f"eval.n_samples = {self.eval.n_samples}: must be >= 1")
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict of every value."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML text."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        """Write the config to a TOML file atomically."""
        from brainvq.runs import atomic_write_text

        atomic_write_text(Path(path), self.to_toml())

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> Config:
        """Build a config from a nested dict; unknown sections or keys are errors."""
        cfg = cls()
        sections = {f.name for f in fields(cls)}
        for section, values in raw.items():
            if section not in sections:
                raise ConfigError(
                    f"{source}: unknown section [{section}]; known: {', '.join(sorted(sections))}"
                )
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{section}] must be a table of key = value")
            for key, value in values.items():
                _set_value(cfg, section, key, value, source)
        return cfg.validate()

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a TOML file; raise ConfigError for a missing file, bad TOML or unknown keys."""
        path = Path(path)
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

    def override(self, assignments: list[str]) -> Config:
        """Apply `section.key=value` strings (values parsed as TOML, else taken as strings)."""
        for item in assignments:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: write it as section.key=value")
            dotted, text = item.split("=", 1)
            if dotted.count(".") != 1:
                raise ConfigError(f"override {item!r}: the key must be section.key, e.g. vqvae.K")
            section, key = dotted.strip().split(".")
            _set_value(self, section, key, _parse_scalar(text.strip()), "command line")
        return self.validate()


def _parse_scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_value(cfg: Config, section: str, key: str, value: Any, source: str) -> None:
    if not hasattr(cfg, section) or section.startswith("_"):
        raise ConfigError(f"{source}: unknown section {section!r}")
    sub = getattr(cfg, section)
    known = {f.name: f for f in fields(sub)}
    if key not in known:
        raise ConfigError(
            f"{source}: unknown key {section}.{key}; known keys: {', '.join(sorted(known))}"
        )
    default = getattr(type(sub)(), key)
    kind = type(default)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            value = value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {section}.{key} = {value!r} must be true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {section}.{key} = {value!r} must be an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {section}.{key} = {value!r} must be a number")
        value = float(value)
    elif kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{source}: {section}.{key} = {value!r} must be a string")
        value = str(value)
    setattr(sub, key, value)
