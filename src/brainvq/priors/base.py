"""Priors over VQ-VAE code maps: one interface, four kinds, saved in the run folder.

Every prior is a ``Prior``:

- ``sample(n, seed, temperature=1.0, top_k=0) -> LongTensor (n, h, w)``: new code maps, indices
  into the run's codebook, repeatable under a seed. ``temperature`` < 1 sharpens each code's
  distribution, > 1 flattens it; ``top_k`` > 0 draws only among the k likeliest codes.
- ``log_likelihood(codes) -> (B,)`` natural-log likelihood of each code map, and
  ``bits_per_code(codes)``, the same as -log2 p / (h * w). Only the autoregressive priors have
  one (``has_likelihood``); the DCGAN and MaskGIT define none and raise a RunError there.
- ``vary(codes, share, seed) -> LongTensor``: variations of given code maps, ``share`` of each
  one's codes drawn anew given the rest; only where ``can_vary`` (maskgit), else a RunError.
- ``save(path, cfg)``; ``load_prior(run, kind)`` loads ``RUN/prior-<kind>.safetensors`` (weights,
  the codebook it was trained on, the config TOML in the file's metadata: loading runs no code).
- Fitting is ``brainvq.training.prior.train_prior`` (``brainvq train-prior --kind KIND``).

The kinds, one module each here (the wrapper), its network in brainvq.nn and its settings in
``prior.<kind>``: ``dcgan`` (the original project's prior, made to work), ``pixelcnn`` (the gated
PixelCNN of the VQ-VAE paper), ``transformer`` (a small decoder-only transformer over
raster-ordered codes with a key/value cache) and ``maskgit`` (a bidirectional transformer that
fills in hidden codes, sampled in a few parallel steps). This module holds what they share:
``Prior`` and ``AutoregressivePrior``.

    from brainvq.runs import load_run
    from brainvq.priors import load_prior
    run = load_run("runs/demo")
    prior = load_prior(run, "transformer")
    codes = prior.sample(16, seed=0, temperature=1.0)     # (16, h, w) int64
    images = run.vqvae.decode(codes)
    bits = prior.bits_per_code(codes)                      # (16,)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from brainvq.config import Config
from brainvq.errors import RunError
from brainvq.nn.maskgit import hidden_count
from brainvq.progress import Progress
from brainvq.runs import atomic_save_safetensors


@contextlib.contextmanager
def eval_mode(module: nn.Module, training: bool = False) -> Iterator[nn.Module]:
    """Run a block with module in eval mode (or training mode), then restore its mode."""
    was_training = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(was_training)


def shape_logits(logits: torch.Tensor, temperature: float, top_k: int, dim: int = -1):
    """Logits divided by the temperature, with all but the top_k largest set to -inf (0 = all)."""
    if temperature <= 0:
        raise ValueError(f"temperature {temperature}: must be > 0")
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[dim]:
        kth = logits.topk(top_k, dim=dim).values.narrow(dim, top_k - 1, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def categorical_picker(
    temperature: float, top_k: int, generator: torch.Generator
) -> Callable[[torch.Tensor], torch.Tensor]:
    """pick(logits (B, K)) -> codes (B,): one seeded categorical draw per row.

    Inverse-CDF sampling: one uniform number per row from ``generator`` (a CPU generator, so a seed
    gives the same codes on any device), compared with the running sum of the probabilities.
    """

    def pick(logits: torch.Tensor) -> torch.Tensor:
        cdf = shape_logits(logits, temperature, top_k).softmax(-1).cumsum(-1)
        u = torch.rand(len(cdf), 1, generator=generator).to(cdf.device) * cdf[:, -1:]
        return torch.searchsorted(cdf, u).squeeze(1).clamp_max(cdf.shape[1] - 1)

    return pick


class Prior(nn.Module):
    """What every prior offers (see the module docstring)."""

    kind = "prior"
    has_likelihood = False  # True where log_likelihood is exact (the autoregressive priors)
    can_vary = False  # True where vary() can redraw part of a given map (maskgit)
    # default (temperature, top_k) of brainvq.sampling: set from the config a prior was saved with
    sampling: tuple[float, int] = (1.0, 0)

    def __init__(self, codebook: torch.Tensor, code_size: int) -> None:
        super().__init__()
        self.register_buffer("codebook", codebook.detach().clone().float())
        self.code_size = code_size

    @property
    def codebook_size(self) -> int:
        """K."""
        return self.codebook.shape[0]

    def _draw(self, n: int, pick, generator: torch.Generator, progress) -> torch.Tensor:
        """n code maps drawn with ``pick(logits (m, K)) -> codes (m,)``; ``generator`` (CPU,
        seeded) for any other randomness; ``progress(k)``: k more codes of each map drawn."""
        raise NotImplementedError

    def _vary(self, codes: torch.Tensor, share: float, pick, generator: torch.Generator, progress):
        """Code maps (B, h, w) with ``share`` of each one's codes hidden and drawn anew given the
        rest (priors with ``can_vary``: those that fill in codes given both sides)."""
        raise NotImplementedError

    def _batched(
        self,
        n: int,
        seed: int,
        temperature: float,
        top_k: int,
        batch_size: int,
        progress: bool,
        draw,
        per_map: int = 0,
    ) -> torch.LongTensor:
        """``draw(start, count, pick, generator, bar_update)`` over batches, in eval mode, with one
        seeded CPU generator, a categorical picker and one progress bar counting the codes drawn
        (``per_map`` of each map; 0 = all)."""
        gen = torch.Generator().manual_seed(int(seed))
        pick = categorical_picker(temperature, top_k, gen)
        total = n * (per_map or self.code_size * self.code_size)
        out = []
        with eval_mode(self), Progress(total, f"{self.kind} sampling", "code", progress) as bar:
            for s in range(0, n, batch_size):
                b = min(batch_size, n - s)
                out.append(draw(s, b, pick, gen, lambda k, b=b: bar.update(k * b)).cpu())
        return torch.cat(out).long()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int = 0,
        batch_size: int = 100,
        progress: bool = False,
    ) -> torch.LongTensor:
        """n new code maps (n, h, w) int64 in [0, K); the same seed gives the same maps."""
        if n < 1:
            raise ValueError(f"n = {n}: ask for at least one sample")
        return self._batched(
            n,
            seed,
            temperature,
            top_k,
            batch_size,
            progress,
            lambda s, b, pick, gen, done: self._draw(b, pick, gen, done),
        )

    @torch.no_grad()
    def vary(
        self,
        codes: torch.Tensor,
        share: float,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int = 0,
        batch_size: int = 100,
        progress: bool = False,
    ) -> torch.LongTensor:
        """Variations of given code maps (B, h, w): in each, ``share`` of the codes (at random
        positions, rounded, at least one) hidden and drawn anew by the prior given the rest;
        the other codes stay. share 1 draws whole new maps. The same seed gives the same maps.

        Each variation stays near its map: how near is set by ``share`` (see
        bench/anchored_realism.py). It is an edit of that slice, not a new brain."""
        if not self.can_vary:
            raise RunError(
                f"the {self.kind} prior cannot redraw part of a given map: variations need a "
                "maskgit prior (`brainvq train-prior --kind maskgit`, then --kind maskgit)"
            )
        if not 0 < share <= 1:
            raise ValueError(f"share {share}: must be in (0, 1]")
        if codes.ndim != 3 or codes.shape[1:] != (self.code_size, self.code_size):
            raise ValueError(
                f"code maps of shape {tuple(codes.shape)}: this prior takes "
                f"(B, {self.code_size}, {self.code_size})"
            )
        codes = codes.long()

        def draw(s, b, pick, gen, done):
            return self._vary(codes[s : s + b], share, pick, gen, done)

        per_map = hidden_count(share, self.code_size * self.code_size)
        return self._batched(
            len(codes), seed, temperature, top_k, batch_size, progress, draw, per_map
        )

    def log_likelihood(self, codes: torch.Tensor) -> torch.Tensor:
        """ln p(code map) of each map in codes (B, h, w) -> (B,)."""
        raise RunError(
            f"a {self.kind} prior defines no likelihood; score with a pixelcnn or transformer prior"
        )

    def bits_per_code(self, codes: torch.Tensor) -> torch.Tensor:
        """-log2 p(code map) / (h * w) for each map in codes (B, h, w) -> (B,)."""
        per_map = self.log_likelihood(codes)
        return -per_map / (math.log(2) * codes.shape[1] * codes.shape[2])

    def save(self, path: str | Path, cfg: Config) -> None:
        """Weights and codebook to safetensors, the config TOML in the metadata (see
        brainvq.priors.registry.load_prior_file)."""
        meta = {
            "config": cfg.to_toml(),
            "kind": f"prior-{self.kind}",
            "code_size": str(self.code_size),
        }
        atomic_save_safetensors(self.state_dict(), Path(path), meta)


class AutoregressivePrior(Prior):
    """A network giving logits (B, K, h, w) of each code given the codes before it in raster
    order; its likelihood is exact and sampling draws one code after another."""

    has_likelihood = True

    def __init__(self, net: nn.Module, codebook: torch.Tensor, code_size: int) -> None:
        super().__init__(codebook, code_size)
        self.net = net

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> logits (B, K, h, w)."""
        return self.net(codes)

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per code (nats), the training objective."""
        return F.cross_entropy(self.net(codes).float(), codes)

    @torch.no_grad()
    def log_likelihood(self, codes: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """ln p(code map) of each map in codes (B, h, w) -> (B,)."""
        dev = self.codebook.device
        out = []
        with eval_mode(self):
            for s in range(0, len(codes), batch_size):
                c = codes[s : s + batch_size].to(dev).long()
                nll = F.cross_entropy(self.net(c).float(), c, reduction="none")
                out.append(-nll.sum(dim=(1, 2)).cpu())
        return torch.cat(out)
