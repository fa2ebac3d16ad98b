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
- Conditions (maskgit and transformer, where the training data had checked axial levels; the
  file's metadata records them, so files without them load unconditioned): ``conditions``
  holds "level" (the slice's normalised level, 0 lowest, 1 highest) and "below" (the code map
  of the slice below). ``sample(n, ..., levels=...)`` draws slices at given levels (by default
  levels drawn as in the training data, ``draw_levels``); ``sample_stack(volumes, slices)``
  draws whole stacks, each slice given its level and the map of the slice below.
- Covariates (maskgit and transformer trained with ``prior.conditions``; specs in
  ``covariates``, brainvq.priors.covariates, kept in the file's metadata):
  ``sample(n, covariates={"cdr": 1}, guidance=2.0)`` draws maps with those covariates (the others
  unknown), following them with classifier-free guidance (brainvq.nn.conditions): 1 the plain
  conditioned prior, 0 exactly the unconditioned one.
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
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainvq.config import Config
from brainvq.errors import RunError
from brainvq.nn.maskgit import hidden_count
from brainvq.priors.covariates import encode, names
from brainvq.priors.picking import categorical_picker, gumbel_argmax, shape_logits
from brainvq.progress import Progress
from brainvq.runs import atomic_save_safetensors

__all__ = ["AutoregressivePrior", "Prior", "categorical_picker", "gumbel_argmax", "shape_logits"]


@contextlib.contextmanager
def eval_mode(module: nn.Module, training: bool = False) -> Iterator[nn.Module]:
    """Run a block with module in eval mode (or training mode), then restore its mode."""
    was_training = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(was_training)


CONDITIONS = ("level", "below")  # what a prior can be conditioned on (see the module docstring)
# share of the slice below's codes hidden ("no slice below" at that position) when a stack's next
# slice is drawn: given the whole map below, a briefly trained prior copies it (bench/levels.py:
# adjacent-slice SSIM 0.98 against 0.92 for real brains, 25% of slices in their level band); with
# half of it hidden the stack follows the anatomy (94% in band) though less alike (SSIM 0.83)
STACK_HIDE_BELOW = 0.5
RETRAIN_WITH_LEVELS = (
    "retrain it on slices named with their level (`slice_Z`): `brainvq train-prior --kind {} "
    "--fresh` (prior.levels auto or on)"
)


class Prior(nn.Module):
    """What every prior offers (see the module docstring)."""

    kind = "prior"
    has_likelihood = False  # True where log_likelihood is exact (the autoregressive priors)
    can_vary = False  # True where vary() can redraw part of a given map (maskgit)
    can_condition = False  # True where a level and the slice below can condition it
    # (each kind's spec, brainvq.config.kinds, says the same: tests/priors/test_prior_contract.py)
    # default (temperature, top_k) of brainvq.sampling: set from the config a prior was saved with
    sampling: tuple[float, int] = (1.0, 0)

    def __init__(
        self, codebook: torch.Tensor, code_size: int, conditions=(), covariates=()
    ) -> None:
        super().__init__()
        self.register_buffer("codebook", codebook.detach().clone().float())
        self.code_size = code_size
        bad = [c for c in conditions if c not in CONDITIONS]
        if bad or (conditions and not self.can_condition):
            raise RunError(
                f"a {self.kind} prior cannot be conditioned on {', '.join(bad or conditions)}; "
                "use a maskgit or transformer prior, or prior.levels off"
            )
        self.conditions = tuple(c for c in CONDITIONS if c in conditions)
        if covariates and not self.can_condition:
            raise RunError(
                f"a {self.kind} prior cannot be conditioned on {names(covariates)}; use a "
                "maskgit or transformer prior, or prior.conditions []"
            )
        self.covariates: list[dict] = [dict(c) for c in covariates]  # brainvq.priors.covariates
        # of the training data: "quantiles" (0th .. 100th percentile of its relative levels) and
        # "per_subject" (levels a subject has, the median): saved in the file's metadata
        self.level_info: dict = {}
        self.source = ""  # the file it was loaded from (named in errors)

    def _unable(self, what: str) -> RunError:
        """The error for a condition this prior was not trained with."""
        name = self.source or f"this {self.kind} prior"
        fix = RETRAIN_WITH_LEVELS.format(self.kind)
        return RunError(f"{name}: trained without {what}; {fix}")

    @property
    def codebook_size(self) -> int:
        """K."""
        return self.codebook.shape[0]

    @property
    def uses_temperature(self) -> bool:
        """True where sampling draws codes from logits, so temperature and top-k matter."""
        return True

    @property
    def level_conditioned(self) -> bool:
        """True when samples can be asked for at a level."""
        return "level" in self.conditions

    @property
    def stacks(self) -> bool:
        """True when whole stacks can be drawn (each slice given the map of the slice below)."""
        return "below" in self.conditions and "level" in self.conditions

    def _draw(self, n: int, pick, generator: torch.Generator, progress, **cond) -> torch.Tensor:
        """n code maps drawn with ``pick(logits (m, K)) -> codes (m,)``; ``generator`` (CPU,
        seeded) for any other randomness; ``progress(k)``: k more codes of each map drawn;
        ``cond``: ``levels`` (n,) and ``below`` (n, h, w) for a conditioned prior."""
        raise NotImplementedError

    def _vary(
        self, codes: torch.Tensor, share: float, pick, generator: torch.Generator, progress, **cond
    ):
        """Code maps (B, h, w) with ``share`` of each one's codes hidden and drawn anew given the
        rest (priors with ``can_vary``: those that fill in codes given both sides)."""
        raise NotImplementedError

    def draw_levels(self, n: int, seed: int = 0) -> torch.Tensor:
        """n relative levels drawn as the training slices' are (from their percentiles), seeded;
        NaN (unknown) for a prior that is not level-conditioned."""
        q = self.level_info.get("quantiles")
        if not self.level_conditioned or not q:
            return torch.full((n,), math.nan)
        u = np.random.default_rng(int(seed)).uniform(0, len(q) - 1, n)
        return torch.from_numpy(np.interp(u, np.arange(len(q)), q)).float()

    def _levels(self, levels, n: int) -> torch.Tensor | None:
        """The levels (n,) to condition n maps on: None for an unconditioned prior given none."""
        if levels is None:
            return None
        if not self.level_conditioned:
            raise self._unable("levels, so it cannot draw slices at a level")
        lv = torch.as_tensor(levels, dtype=torch.float32).reshape(-1)
        lv = lv.expand(n).clone() if lv.numel() == 1 else lv
        if lv.numel() != n:
            raise ValueError(f"{lv.numel()} levels for {n} maps")
        if bool(((lv < 0) | (lv > 1)).any()):
            raise RunError(f"level {float(lv[(lv < 0) | (lv > 1)][0]):g}: must be in [0, 1]")
        return lv

    def _covariates(self, covariates: dict | None, n: int) -> torch.Tensor | None:
        """Asked covariates ({name: value or (n,) values}) as the network's (n, C) inputs."""
        if not covariates:
            return None
        return encode(self.covariates, covariates, n, self.source or f"this {self.kind} prior")

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
        maps: int = 1,
    ) -> torch.LongTensor:
        """``draw(start, count, pick, generator, bar_update)`` over batches, in eval mode, with one
        seeded CPU generator, a categorical picker and one progress bar counting the codes drawn
        (``per_map`` of each map; 0 = all; ``maps`` maps per item)."""
        gen = torch.Generator().manual_seed(int(seed))
        pick = categorical_picker(temperature, top_k, gen)
        total = n * maps * (per_map or self.code_size * self.code_size)
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
        levels=None,
        covariates: dict | None = None,
        guidance: float = 1.0,
    ) -> torch.LongTensor:
        """n new code maps (n, h, w) int64 in [0, K); the same seed gives the same maps.
        ``levels`` (a level in [0, 1] for all, or (n,)): draw slices at those levels (a
        level-conditioned prior; see draw_levels for levels drawn as in the training data).
        ``covariates`` ({name: value for all, or (n,) values}; the prior's others unknown) and
        ``guidance`` (>= 0): draw maps with those covariates (see the module docstring)."""
        if n < 1:
            raise ValueError(f"n = {n}: ask for at least one sample")
        if guidance < 0:
            raise ValueError(f"guidance {guidance}: must be >= 0")
        lv = self._levels(levels, n)
        cov = self._covariates(covariates, n)

        def draw(s, b, pick, gen, done):
            cond = {} if lv is None else {"levels": lv[s : s + b]}
            if cov is not None:
                cond |= {"covariates": cov[s : s + b], "guidance": guidance}
            return self._draw(b, pick, gen, done, **cond)

        return self._batched(n, seed, temperature, top_k, batch_size, progress, draw)

    def stack_levels(self, slices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The relative levels a stack is drawn at and which of them are kept: the training
        brains' own number of levels evenly from 0 to 1 (the spacing the prior learned from
        pairs of neighbouring slices), of which ``slices`` evenly spread ones are kept (all by
        default); more than the prior learned draws ``slices`` levels directly, closer together
        than it learned, with a warning."""
        native = int(self.level_info.get("per_subject", 0)) or (slices or 32)
        slices = slices or native
        if slices > native:
            warnings.warn(
                f"{slices} slices: this prior learned stacks of {native} (its training brains' "
                "levels), so neighbouring slices are drawn closer than it learned",
                stacklevel=3,
            )
            native = slices
        drawn = np.linspace(0.0, 1.0, native) if native > 1 else np.zeros(1)
        keep = np.round(np.linspace(0, native - 1, slices)).astype(np.int64)
        return drawn.astype(np.float32), keep

    @torch.no_grad()
    def sample_stack(
        self,
        volumes: int,
        slices: int | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int = 0,
        batch_size: int = 100,
        progress: bool = False,
        hide_below: float = STACK_HIDE_BELOW,
    ) -> tuple[torch.LongTensor, np.ndarray]:
        """Whole stacks: code maps (volumes, slices, h, w) from the lowest slice up, each drawn
        given its level and the map of the slice below, ``hide_below`` of its codes (seeded
        positions) hidden, and their levels (slices,). See stack_levels for the levels; the same
        seed gives the same stacks."""
        if not self.stacks:
            raise self._unable("levels and the slice below, so it cannot draw stacks")
        if volumes < 1 or (slices is not None and slices < 2):
            raise ValueError(f"{volumes} stacks of {slices} slices: ask for >= 1 of >= 2 slices")
        if not 0 <= hide_below <= 1:
            raise ValueError(f"hide_below {hide_below}: must be in [0, 1]")
        drawn, keep = self.stack_levels(slices)

        def draw(s, b, pick, gen, done):
            below, maps = None, []
            for level in drawn:
                lv = torch.full((b,), float(level))
                given = below
                if below is not None and hide_below > 0:
                    hidden = torch.rand(below.shape, generator=gen) < hide_below
                    given = below.masked_fill(hidden.to(below.device), self.codebook_size)
                below = self._draw(b, pick, gen, done, levels=lv, below=given)
                maps.append(below)
            return torch.stack(maps, 1)

        codes = self._batched(
            volumes, seed, temperature, top_k, batch_size, progress, draw, maps=len(drawn)
        )
        return codes[:, torch.from_numpy(keep)], drawn[keep]

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
        levels=None,
    ) -> torch.LongTensor:
        """Variations of given code maps (B, h, w): in each, ``share`` of the codes (at random
        positions, rounded, at least one) hidden and drawn anew by the prior given the rest;
        the other codes stay. share 1 draws whole new maps. The same seed gives the same maps.
        ``levels``: the level each variation is drawn at (a level-conditioned prior).

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
        lv = self._levels(levels, len(codes))

        def draw(s, b, pick, gen, done):
            cond = {} if lv is None else {"levels": lv[s : s + b]}
            return self._vary(codes[s : s + b], share, pick, gen, done, **cond)

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
        if self.conditions:
            meta["conditions"] = ",".join(self.conditions)
            meta["levels"] = json.dumps(self.level_info)
        if self.covariates:
            meta["covariates"] = json.dumps(self.covariates)
        atomic_save_safetensors(self.state_dict(), Path(path), meta)


class AutoregressivePrior(Prior):
    """A network giving logits (B, K, h, w) of each code given the codes before it in raster
    order; its likelihood is exact and sampling draws one code after another."""

    has_likelihood = True

    def __init__(
        self, net: nn.Module, codebook: torch.Tensor, code_size: int, conditions=(), covariates=()
    ):
        super().__init__(codebook, code_size, conditions, covariates)
        self.net = net

    def forward(self, codes: torch.Tensor, **cond) -> torch.Tensor:
        """Codes (B, h, w) -> logits (B, K, h, w); ``cond``: levels, below, covariates."""
        return self.net(codes, **cond)

    def loss(self, codes: torch.Tensor, **cond) -> torch.Tensor:
        """Mean negative log-likelihood per code (nats), the training objective."""
        return F.cross_entropy(self.net(codes, **cond).float(), codes)

    @torch.no_grad()
    def log_likelihood(self, codes: torch.Tensor, batch_size: int = 64, levels=None):
        """ln p(code map) of each map in codes (B, h, w) -> (B,); a level-conditioned prior
        scores maps at ``levels`` (B,), or with the level unknown (as trained for 10% of maps)."""
        dev = self.codebook.device
        lv = self._levels(levels, len(codes))
        out = []
        with eval_mode(self):
            for s in range(0, len(codes), batch_size):
                c = codes[s : s + batch_size].to(dev).long()
                cond = {} if lv is None else {"levels": lv[s : s + batch_size]}
                nll = F.cross_entropy(self.net(c, **cond).float(), c, reduction="none")
                out.append(-nll.sum(dim=(1, 2)).cpu())
        return torch.cat(out)
