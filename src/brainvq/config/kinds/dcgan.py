"""The DCGAN prior kind: its settings (prior.dcgan) and its spec."""

from __future__ import annotations

from dataclasses import dataclass

from brainvq.config.checks import need, non_negative, one_of, positive
from brainvq.config.kinds.spec import KindSpec


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
        positive(self, prefix, "latent_dim", "g_channels", "d_channels", "steps_per_epoch")
        non_negative(self, prefix, "step_budget")
        one_of(self, prefix, "design", ("snap", "gumbel", "distance"))
        one_of(self, prefix, "d_input", ("codes", "image", "both"))
        one_of(self, prefix, "loss", ("hinge", "bce"))
        need(
            0.0 <= self.ema_decay < 1.0,
            f"{prefix}.ema_decay",
            self.ema_decay,
            "must be in [0, 1) (0 = off)",
        )
        non_negative(self, prefix, "r1_gamma", "commit_weight", "mode_seeking")
        need(self.gumbel_tau > 0, f"{prefix}.gumbel_tau", self.gumbel_tau, "must be > 0")
        for name in ("lr_g", "lr_d"):
            need(getattr(self, name) > 0, f"{prefix}.{name}", getattr(self, name), "must be > 0")


SPEC = KindSpec(
    name="dcgan", title="DCGAN", settings=DCGANConfig, prior="brainvq.priors.dcgan:DCGANPrior",
    # temperatures: bench/results/priors.md, bench/results/prior_dcgan.md (the temperature at
    # which samples came closest to the training slices with diversity still within 0.05 of
    # real slices')
    temperature=0.8, batch_size=32, training="gan",
    # a DCGAN step is one discriminator and one generator update: two optimizer steps
    updates_per_step=2, losses=("g_loss", "d_loss"), curves="generator and discriminator losses",
)  # fmt: skip
