"""LightningModule for the DCGAN prior: alternate D and G steps (manual optimization).

Each step: one discriminator update on a batch of real code maps (embedded with the frozen codebook)
against a batch of generated ones, then one generator update. Logged per step: ``d_loss``,
``g_loss``, ``d_real`` and ``d_fake`` (mean raw discriminator score on real and generated maps; a
gap that keeps widening means D is winning), and ``fake_codes``, the number of distinct codes in the
generated batch (a collapse to a few codes shows here first).

Stabilisers, each a `prior.dcgan.*` setting:
- ``loss = "hinge"`` (Lim & Ye, 2017; as in SAGAN/BigGAN) or ``"bce"`` (non-saturating, Goodfellow
  et al., 2014, the DCGAN paper's loss).
- ``spectral_norm`` in D (Miyato et al., 2018) in place of its BatchNorm.
- ``minibatch_std`` in D (Karras et al., 2018) against mode collapse.
- ``d_input``: D judges embedded code maps ("codes"), the slices the run's frozen VQ-VAE decoder
  makes of them ("image": real maps decoded too, so both sides carry the decoder's own blur), or
  both with one discriminator each. G's gradient reaches its one-hot codes through the decoder.
- ``d_augment``: DiffAugment (Zhao et al., 2020) of what D sees, real and generated alike:
  embedded code maps get a random shift and a cutout (``augment_maps``), images a random shift.
- ``r1_gamma``: R1 penalty, gamma/2 * E|grad D(real)|^2 (Mescheder et al., 2018), on every real
  input D sees.
- ``ema_decay``: sampling uses an exponential moving average of G's weights (Karras et al., 2018;
  Yazici et al., 2019), which smooths the step-to-step oscillation of GAN training.
- ``mode_seeking``: weight of a mode-seeking term (Mao et al., 2019) that rewards G for maps
  that differ as their noises differ (its raw output: the latent map, or the logits).
- ``commit_weight`` (design "snap"): a commitment term |z - sg(snap(z))|^2 keeps G's continuous
  output near the codebook, where the straight-through gradient is a good approximation.
"""

from __future__ import annotations

import copy

import lightning as L
import torch
import torch.nn.functional as F

from brainvq.config import Config
from brainvq.nn.dcgan import Discriminator, augment_maps, random_translate
from brainvq.nn.quantizer import embed_codes
from brainvq.priors import DCGANPrior


def mode_seeking_loss(noise: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Mode seeking term (Mao et al., 2019): 1 / (distance of paired outputs over that of their
    noises), pairing the batch's first half with its second; small when G's maps vary with z."""
    h = noise.shape[0] // 2
    d_out = (out[:h] - out[h : 2 * h]).abs().mean()
    d_noise = (noise[:h] - noise[h : 2 * h]).abs().mean()
    return 1.0 / (d_out / d_noise + 1e-5)


class DCGANModule(L.LightningModule):
    """Trains a DCGANPrior (generator) against a Discriminator over embedded code maps."""

    def __init__(
        self,
        cfg: Config,
        codebook: torch.Tensor,
        code_size: int,
        decoder: torch.nn.Module | None = None,
    ) -> None:
        """decoder: the run's VQ-VAE decoder (embedded map -> image), needed unless
        prior.dcgan.d_input is "codes"; a frozen copy is kept."""
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        p = cfg.prior.dcgan
        self.prior = DCGANPrior(p, codebook, code_size)
        self.prior_ema = copy.deepcopy(self.prior) if p.ema_decay > 0 else None
        if self.prior_ema is not None:
            self.prior_ema.requires_grad_(False)
        self.disc = self.disc_image = self.decoder = None
        if p.d_input in ("codes", "both"):
            self.disc = Discriminator(
                codebook.shape[1],
                code_size,
                p.d_channels,
                spectral_norm=p.spectral_norm,
                minibatch_std=p.minibatch_std,
            )
        if p.d_input in ("image", "both"):
            if decoder is None:
                raise ValueError(f"prior.dcgan.d_input = {p.d_input!r} needs the VQ-VAE decoder")
            self.decoder = copy.deepcopy(decoder).float().eval().requires_grad_(False)
            with torch.no_grad():
                side = self.decoder(torch.zeros(1, codebook.shape[1], code_size, code_size))
            self.disc_image = Discriminator(
                side.shape[1],
                side.shape[-1],
                p.d_channels,
                spectral_norm=p.spectral_norm,
                minibatch_std=p.minibatch_std,
            )

    def discriminators(self) -> list[torch.nn.Module]:
        """The discriminators in use (one, or two with d_input "both")."""
        return [d for d in (self.disc, self.disc_image) if d is not None]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.decoder is not None:
            self.decoder.eval()  # frozen: never in training mode
        return self

    def sampler(self) -> DCGANPrior:
        """The generator to sample from: the EMA copy when there is one."""
        return self.prior_ema if self.prior_ema is not None else self.prior

    def configure_optimizers(self):
        p = self.cfg.prior.dcgan
        opt_g = torch.optim.Adam(self.prior.generator.parameters(), p.lr_g, betas=(p.beta1, 0.999))
        params = [q for d in self.discriminators() for q in d.parameters()]
        opt_d = torch.optim.Adam(params, p.lr_d, betas=(p.beta1, 0.999))
        return [opt_g, opt_d]

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.cfg.prior.dcgan.loss == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def _g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        if self.cfg.prior.dcgan.loss == "hinge":
            return -fake.mean()
        return F.softplus(-fake).mean()

    def _inputs(self, real: torch.Tensor | None, fake: torch.Tensor):
        """(discriminator, real input, fake input) for each discriminator in use; images are
        the decoder's output; with d_augment both are augmented. real may be None (G step)."""
        out = []
        augment = self.cfg.prior.dcgan.d_augment
        if self.disc is not None:
            maps = augment_maps if augment else (lambda x: x)
            out.append((self.disc, None if real is None else maps(real), maps(fake)))
        if self.disc_image is not None:
            shift = random_translate if augment else (lambda x: x)
            real_img = None
            if real is not None:
                with torch.no_grad():
                    real_img = shift(self.decoder(real))
            out.append((self.disc_image, real_img, shift(self.decoder(fake))))
        return out

    def training_step(self, batch, batch_idx: int) -> None:
        p = self.cfg.prior.dcgan
        real_codes = batch[0] if isinstance(batch, (list, tuple)) else batch
        b = real_codes.shape[0]
        opt_g, opt_d = self.optimizers()

        # discriminator
        real = embed_codes(real_codes, self.prior.codebook)
        with torch.no_grad():
            fake, _, _ = self.prior(torch.randn(b, p.latent_dim, device=self.device))
        d_loss = real.new_zeros(())
        d_real_mean, d_fake_mean = [], []
        for disc, real_in, fake_in in self._inputs(real, fake):
            if p.r1_gamma > 0:
                real_in.requires_grad_(True)
            d_real, d_fake = disc(real_in), disc(fake_in)
            d_loss = d_loss + self._d_loss(d_real, d_fake)
            if p.r1_gamma > 0:
                (grad,) = torch.autograd.grad(d_real.sum(), real_in, create_graph=True)
                d_loss = d_loss + 0.5 * p.r1_gamma * grad.pow(2).sum(dim=(1, 2, 3)).mean()
            d_real_mean.append(d_real.mean())
            d_fake_mean.append(d_fake.mean())
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()

        # generator
        noise = torch.randn(b, p.latent_dim, device=self.device)
        fake, codes, raw = self.prior(noise)
        g_loss = sum(self._g_loss(disc(x)) for disc, _, x in self._inputs(None, fake))
        if p.design == "snap" and p.commit_weight > 0:
            g_loss = g_loss + p.commit_weight * F.mse_loss(raw, fake.detach())
        if p.mode_seeking > 0 and b >= 2:
            g_loss = g_loss + p.mode_seeking * mode_seeking_loss(noise, raw)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()
        if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
            raise FloatingPointError(f"non-finite GAN loss at step {self.global_step}")
        self._update_ema()

        self.log("g_loss", g_loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("d_loss", d_loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("d_real", torch.stack(d_real_mean).mean(), on_step=True, on_epoch=True)
        self.log("d_fake", torch.stack(d_fake_mean).mean(), on_step=True, on_epoch=True)
        n_codes = torch.unique(codes).numel()
        self.log("fake_codes", float(n_codes), prog_bar=True, on_step=True, on_epoch=True)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.prior_ema is None:
            return
        step = self.global_step
        # warm-up: average over roughly the steps seen so far until `ema_decay` takes over
        decay = min(self.cfg.prior.dcgan.ema_decay, (1 + step) / (10 + step))
        src = self.prior.generator
        dst = self.prior_ema.generator
        for pe, pg in zip(dst.parameters(), src.parameters(), strict=True):
            pe.lerp_(pg, 1 - decay)
        for be, bg in zip(dst.buffers(), src.buffers(), strict=True):
            be.copy_(bg)
