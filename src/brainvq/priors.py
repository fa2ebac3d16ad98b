"""Priors over VQ-VAE code maps: what samples new code maps, and how it is saved and loaded.

A prior has ``sample(n, seed) -> LongTensor (n, h, w)`` of indices into the run's codebook,
repeatable under a seed. Its weights sit in ``RUN/prior-<kind>.safetensors`` with the config TOML
in the file's metadata (like ``vqvae.safetensors``), so loading one never runs code.

    from brainvq.runs import load_run
    from brainvq.priors import load_prior
    run = load_run("runs/demo")
    codes = load_prior(run).sample(16, seed=0)     # (16, h, w) int64
    images = run.vqvae.decode(codes)
"""

from __future__ import annotations

from pathlib import Path

import tomllib
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from brainvq.config import Config, PriorConfig
from brainvq.errors import RunError
from brainvq.nn.dcgan import Generator, embed_onehot, snap
from brainvq.runs import Run, RunDir, atomic_save_safetensors


def prior_path(run: RunDir, kind: str = "dcgan") -> Path:
    """RUN/prior-<kind>.safetensors."""
    return run.path / f"prior-{kind}.safetensors"


class DCGANPrior(nn.Module):
    """A DCGAN generator over code maps plus the (frozen) codebook it emits codes of.

    ``forward(noise)`` is the differentiable path used in training: it returns the embedded map the
    discriminator sees (B, D, h, w), the codes (B, h, w), and the generator's raw output. With
    design "snap" that is the continuous latent (snapped straight-through); with "gumbel" it is
    the logits (sampled to a straight-through one-hot by Gumbel-softmax).
    """

    kind = "dcgan"

    def __init__(self, pcfg: PriorConfig, codebook: torch.Tensor, code_size: int) -> None:
        super().__init__()
        self.design = pcfg.design
        self.tau = pcfg.gumbel_tau
        self.latent_dim = pcfg.latent_dim
        self.code_size = code_size
        k, d = codebook.shape
        out = d if self.design == "snap" else k
        self.generator = Generator(pcfg.latent_dim, out, code_size, channels=pcfg.g_channels)
        self.register_buffer("codebook", codebook.detach().clone().float())
        # "snap" with tanh_output: G's output = tanh(.) * the codebook's per-dimension range, as
        # DCGAN bounds its images with tanh; it keeps the latent inside the codebook's box.
        self.tanh_output = self.design == "snap" and pcfg.tanh_output
        self.register_buffer("scale", self.codebook.abs().amax(dim=0).clamp_min(1e-6))

    @property
    def codebook_size(self) -> int:
        """K."""
        return self.codebook.shape[0]

    def _raw(self, noise: torch.Tensor) -> torch.Tensor:
        raw = self.generator(noise).float()
        if self.tanh_output:
            raw = torch.tanh(raw) * self.scale[None, :, None, None]
        return raw

    def forward(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise (B, latent_dim) -> (embedded map (B, D, h, w), codes (B, h, w), raw output)."""
        raw = self._raw(noise)
        if self.design == "snap":
            embedded, codes = snap(raw, self.codebook)
        else:
            onehot = F.gumbel_softmax(raw, tau=self.tau, hard=True, dim=1)
            codes = onehot.argmax(dim=1)
            embedded = embed_onehot(onehot, self.codebook)
        return embedded, codes, raw

    def noise(self, n: int, seed: int) -> torch.Tensor:
        """Seeded standard-normal noise (n, latent_dim), drawn on the CPU so seeds match anywhere."""
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.latent_dim, generator=g)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch_size: int = 64) -> torch.LongTensor:
        """n new code maps (n, h, w) int64 in [0, K); the same seed gives the same maps."""
        if n < 1:
            raise ValueError(f"n = {n}: ask for at least one sample")
        was_training = self.training
        self.eval()
        device = self.codebook.device
        noise = self.noise(n, seed)
        gen = torch.Generator().manual_seed(int(seed) + 1)
        out = []
        for s in range(0, n, batch_size):
            raw = self._raw(noise[s : s + batch_size].to(device))
            if self.design == "snap":
                _, codes = snap(raw, self.codebook)
            else:  # a categorical draw per position: argmax of logits + seeded Gumbel noise
                u = torch.rand(raw.shape, generator=gen).clamp_(1e-9, 1 - 1e-9).to(device)
                codes = (raw - torch.log(-torch.log(u))).argmax(dim=1)
            out.append(codes.cpu())
        self.train(was_training)
        return torch.cat(out).long()

    @torch.no_grad()
    def recalibrate_bn(self, n_batches: int = 16, batch_size: int = 64, seed: int = 0) -> None:
        """Re-estimate BatchNorm running statistics as exact averages over fresh noise batches.

        Sampling runs the generator in eval mode; after EMA weight averaging the running statistics
        no longer match the weights, so they are recomputed (a standard step for EMA generators).
        """
        bns = [m for m in self.generator.modules() if isinstance(m, nn.BatchNorm2d)]
        if not bns:
            return
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        was_training = self.training
        self.generator.train()
        device = self.codebook.device
        for i in range(n_batches):
            self.generator(self.noise(batch_size, seed + 1000 + i).to(device))
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        self.train(was_training)

    def save(self, path: str | Path, cfg: Config) -> None:
        """Weights and codebook to safetensors, the config TOML in the metadata."""
        meta = {
            "config": cfg.to_toml(),
            "kind": f"prior-{self.kind}",
            "code_size": str(self.code_size),
        }
        atomic_save_safetensors(self.state_dict(), Path(path), meta)


def load_dcgan(path: str | Path) -> DCGANPrior:
    """A DCGANPrior from its safetensors file (config and code size from the metadata)."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no DCGAN prior here; train one with `brainvq train-prior`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != "prior-dcgan" or "config" not in meta or "code_size" not in meta:
        raise RunError(f"{path}: not a brainvq DCGAN prior file; retrain with --fresh")
    cfg = Config.from_dict(tomllib.loads(meta["config"]), source=str(path))
    state = load_file(str(path))
    if "codebook" not in state:
        raise RunError(f"{path}: the prior carries no codebook; retrain with --fresh")
    prior = DCGANPrior(cfg.prior, state["codebook"], int(meta["code_size"]))
    expected = prior.state_dict()
    bad = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if bad:
        raise RunError(
            f"{path}: weights do not fit the config in its metadata ({bad[0]}); retrain with --fresh"
        )
    prior.load_state_dict(state)
    return prior.eval()


def load_prior(run: Run, kind: str = "dcgan") -> DCGANPrior:
    """The trained prior of a run (RUN/prior-<kind>.safetensors), checked against its codebook."""
    if kind != "dcgan":
        raise RunError(f"prior kind {kind!r}: only dcgan is available")
    prior = load_dcgan(prior_path(run.dir, kind))
    emb = run.vqvae.quantizer.embedding.detach().float().cpu()
    if prior.codebook.shape != emb.shape or not torch.allclose(prior.codebook, emb):
        raise RunError(
            f"{prior_path(run.dir, kind)}: trained on another VQ-VAE codebook than "
            f"{run.dir.vqvae}; retrain the prior with --fresh"
        )
    return prior
