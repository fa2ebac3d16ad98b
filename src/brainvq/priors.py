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
- Fitting is ``brainvq.training.prior_stage.train_prior`` (``brainvq train-prior --kind KIND``).

The kinds: ``dcgan`` (brainvq.nn.dcgan, the original project's prior, made to work), ``pixelcnn``
(the gated PixelCNN of the VQ-VAE paper, brainvq.nn.pixelcnn) and ``transformer`` (a small
decoder-only transformer over raster-ordered codes with a key/value cache,
brainvq.nn.transformer) and ``maskgit`` (a bidirectional transformer that fills in hidden codes,
sampled in a few parallel steps, brainvq.nn.maskgit).

    from brainvq.runs import load_run
    from brainvq.priors import load_prior
    run = load_run("runs/demo")
    prior = load_prior(run, "transformer")
    codes = prior.sample(16, seed=0, temperature=1.0)     # (16, h, w) int64
    images = run.vqvae.decode(codes)
    bits = prior.bits_per_code(codes)                      # (16,)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import tomllib
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from brainvq.config import PRIOR_KINDS, Config, PriorConfig
from brainvq.errors import RunError
from brainvq.nn.dcgan import Generator, embed_onehot, snap
from brainvq.nn.maskgit import MaskedCodeTransformer, hidden_count
from brainvq.nn.pixelcnn import GatedPixelCNN
from brainvq.nn.transformer import CodeTransformer
from brainvq.runs import Run, RunDir, atomic_save_safetensors


def prior_path(run: RunDir, kind: str = "dcgan") -> Path:
    """RUN/prior-<kind>.safetensors."""
    return run.path / f"prior-{kind}.safetensors"


def shape_logits(logits: torch.Tensor, temperature: float, top_k: int, dim: int = -1):
    """Logits divided by the temperature, with all but the top_k largest set to -inf (0 = all)."""
    if temperature <= 0:
        raise ValueError(f"temperature {temperature}: must be > 0")
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[dim]:
        kth = logits.topk(top_k, dim=dim).values.narrow(dim, top_k - 1, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def gumbel_argmax(
    logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator, dim: int = 1
) -> torch.Tensor:
    """One categorical draw per position along ``dim`` (the Gumbel-max trick): the argmax of the
    shaped logits (shape_logits) plus Gumbel noise from one uniform number per logit, drawn from
    ``generator`` (CPU) in the logits' order. Works in place: ``logits`` (float) is consumed."""
    u = torch.rand(logits.shape, generator=generator).clamp_(1e-9, 1 - 1e-9)
    gumbel = u.log_().neg_().log_().to(logits.device)  # log(-log u): the Gumbel noise, negated
    if 0 < top_k < logits.shape[dim]:
        logits = shape_logits(logits, temperature, top_k, dim=dim)
    else:  # shape_logits without its copy
        if temperature <= 0:
            raise ValueError(f"temperature {temperature}: must be > 0")
        logits = logits.float().div_(temperature)
    return logits.sub_(gumbel).argmax(dim=dim)


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
        was_training = self.training
        self.eval()
        gen = torch.Generator().manual_seed(int(seed))
        pick = categorical_picker(temperature, top_k, gen)
        total = n * (per_map or self.code_size * self.code_size)
        bar = tqdm(total=total, desc=f"{self.kind} sampling", unit="code", disable=not progress)
        out = []
        for s in range(0, n, batch_size):
            b = min(batch_size, n - s)
            out.append(draw(s, b, pick, gen, lambda k, b=b: bar.update(k * b)).cpu())
        bar.close()
        self.train(was_training)
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
        """Weights and codebook to safetensors, the config TOML in the metadata."""
        meta = {
            "config": cfg.to_toml(),
            "kind": f"prior-{self.kind}",
            "code_size": str(self.code_size),
        }
        atomic_save_safetensors(self.state_dict(), Path(path), meta)


class DCGANPrior(Prior):
    """A DCGAN generator over code maps plus the (frozen) codebook it emits codes of.

    ``forward(noise)`` is the differentiable path used in training: it returns the embedded map the
    discriminator sees (B, D, h, w), the codes (B, h, w), and the generator's raw output. With
    design "snap" that is the continuous latent (snapped straight-through); with "gumbel" it is
    the logits (sampled to a straight-through one-hot by Gumbel-softmax).
    """

    kind = "dcgan"

    def __init__(self, pcfg: PriorConfig, codebook: torch.Tensor, code_size: int) -> None:
        super().__init__(codebook, code_size)
        self.design = pcfg.design
        self.tau = pcfg.gumbel_tau
        self.latent_dim = pcfg.latent_dim
        k, d = codebook.shape
        out = d if self.design == "snap" else k
        self.generator = Generator(pcfg.latent_dim, out, code_size, channels=pcfg.g_channels)
        # "snap" with tanh_output: G's output = tanh(.) * the codebook's per-dimension range, as
        # DCGAN bounds its images with tanh; it keeps the latent inside the codebook's box.
        self.tanh_output = self.design == "snap" and pcfg.tanh_output
        self.register_buffer("scale", self.codebook.abs().amax(dim=0).clamp_min(1e-6))

    def _raw(self, noise: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        raw = self.generator(noise, channels_last).float()
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
    def sample(
        self,
        n: int,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int = 0,
        batch_size: int = 4,
        progress: bool = False,
        draw: str = "cdf",
    ) -> torch.LongTensor:
        """n new code maps (n, h, w) int64 in [0, K); the same seed gives the same maps, whatever
        the batch size (small batches keep the K logits of each position in the CPU's caches).

        Design "gumbel": temperature and top_k shape the generator's logits before the draw.
        ``draw`` "cdf": one uniform number per position against the running sum of the
        probabilities (categorical_picker, the draw of the other priors); "gumbel": the argmax
        of logits plus Gumbel noise, K uniform numbers per position (earlier versions' only
        draw: the maps they gave under a seed). Both draw from the same distribution, not the
        same maps; "cdf" asks the generator for K times fewer numbers, 1.6x the slices per
        CPU-second at K = 512 with 32x32 maps (bench/results/sampling_speed.md).
        Design "snap" has nothing to draw from (each code is the nearest to G's output), so
        temperature, top_k and draw are ignored there.
        """
        if n < 1:
            raise ValueError(f"n = {n}: ask for at least one sample")
        was_training = self.training
        self.eval()
        device = self.codebook.device
        if draw not in ("gumbel", "cdf"):
            raise ValueError(f"draw {draw!r}: use 'gumbel' or 'cdf'")
        noise = self.noise(n, seed)
        gen = torch.Generator().manual_seed(int(seed) + 1)
        pick = categorical_picker(temperature, top_k, gen)
        out = []
        for s in range(0, n, batch_size):
            z = noise[s : s + batch_size].to(device)
            if self.design == "snap":
                _, codes = snap(self._raw(z), self.codebook)
            elif draw == "gumbel":  # a categorical draw per position: argmax of logits + noise
                codes = gumbel_argmax(self._raw(z), temperature, top_k, gen)
            else:  # channels-last logits: (B, h, w, K) in memory, one row per position
                raw = self._raw(z, channels_last=True)
                b, k, h, w = raw.shape
                codes = pick(raw.permute(0, 2, 3, 1).reshape(-1, k)).view(b, h, w)
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
        was_training = self.training
        self.eval()
        dev = self.codebook.device
        out = []
        for s in range(0, len(codes), batch_size):
            c = codes[s : s + batch_size].to(dev).long()
            nll = F.cross_entropy(self.net(c).float(), c, reduction="none")
            out.append(-nll.sum(dim=(1, 2)).cpu())
        self.train(was_training)
        return torch.cat(out)


class PixelCNNPrior(AutoregressivePrior):
    """The gated PixelCNN prior (van den Oord et al., 2016; the VQ-VAE paper's prior)."""

    kind = "pixelcnn"

    def __init__(self, pcfg: PriorConfig, codebook: torch.Tensor, code_size: int) -> None:
        net = GatedPixelCNN(
            codebook.shape[0], pcfg.pixelcnn_channels, pcfg.pixelcnn_layers, pcfg.pixelcnn_kernel
        )
        super().__init__(net, codebook, code_size)

    def _draw(self, n: int, pick, generator, progress) -> torch.Tensor:
        return self.net.sample(n, (self.code_size, self.code_size), pick, progress)


def transformer_sizes(pcfg: PriorConfig) -> dict:
    """The prior.transformer_* settings (and dropout) as keyword arguments of the networks."""
    return {
        "dim": pcfg.transformer_dim,
        "layers": pcfg.transformer_layers,
        "heads": pcfg.transformer_heads,
        "kv_heads": pcfg.transformer_kv_heads,
        "dropout": pcfg.dropout,
    }


class TransformerPrior(AutoregressivePrior):
    """A small decoder-only transformer over raster-ordered codes, sampled with a KV cache."""

    kind = "transformer"

    def __init__(self, pcfg: PriorConfig, codebook: torch.Tensor, code_size: int) -> None:
        net = CodeTransformer(
            codebook.shape[0],
            code_size * code_size,
            window=pcfg.transformer_window,
            **transformer_sizes(pcfg),
        )
        super().__init__(net, codebook, code_size)

    def _draw(self, n: int, pick, generator, progress) -> torch.Tensor:
        return self.net.generate(n, (self.code_size, self.code_size), pick, progress=progress)


class MaskGITPrior(Prior):
    """A bidirectional masked-code transformer sampled by iterative parallel decoding
    (MaskGIT, Chang et al., 2022; brainvq.nn.maskgit). It has no tractable likelihood: its
    training loss, and the validation bits/code that picks its kept weights, are the bits per
    *hidden* code of maps with a scheduled share hidden, not -log2 p(map)."""

    kind = "maskgit"
    can_vary = True

    def __init__(self, pcfg: PriorConfig, codebook: torch.Tensor, code_size: int) -> None:
        super().__init__(codebook, code_size)
        self.net = MaskedCodeTransformer(
            codebook.shape[0], code_size * code_size, **transformer_sizes(pcfg)
        )
        self.steps, self.noise = pcfg.maskgit_steps, pcfg.maskgit_noise

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, h, w) in [0, K] (K = hidden) -> logits (B, K, h, w)."""
        return self.net(tokens)

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats) of the hidden codes of maps with a scheduled share hidden.

        In eval mode the hidden positions come from a fixed seed, so validation is repeatable."""
        gen = None if self.training else torch.Generator().manual_seed(0)
        tokens, hidden = self.net.hide(codes, gen)
        ce = F.cross_entropy(self.net(tokens).float(), codes, reduction="none")
        return ce[hidden].mean()

    def _draw(self, n: int, pick, generator, progress) -> torch.Tensor:
        size = (self.code_size, self.code_size)
        return self.net.generate(n, size, pick, self.steps, self.noise, generator, progress)

    def _vary(self, codes: torch.Tensor, share: float, pick, generator, progress) -> torch.Tensor:
        size = (self.code_size, self.code_size)
        tokens, _ = self.net.hide(codes.to(self.codebook.device), generator, share)
        return self.net.generate(
            len(tokens), size, pick, self.steps, self.noise, generator, progress, tokens
        )


PRIOR_CLASSES: dict[str, type[Prior]] = {
    "dcgan": DCGANPrior,
    "pixelcnn": PixelCNNPrior,
    "transformer": TransformerPrior,
    "maskgit": MaskGITPrior,
}
assert set(PRIOR_CLASSES) == set(PRIOR_KINDS)


def build_prior(pcfg: PriorConfig, codebook: torch.Tensor, code_size: int) -> Prior:
    """A fresh prior of kind pcfg.kind over the given codebook (K, D) and code-map side."""
    return PRIOR_CLASSES[pcfg.kind](pcfg, codebook, code_size)


def load_prior_file(path: str | Path) -> Prior:
    """A prior from its safetensors file (kind, config and code size from the metadata)."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no prior here; train one with `brainvq train-prior`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    kind = meta.get("kind", "").removeprefix("prior-")
    if kind not in PRIOR_CLASSES or "config" not in meta or "code_size" not in meta:
        raise RunError(f"{path}: not a brainvq prior file; retrain with --fresh")
    cfg = Config.from_dict(tomllib.loads(meta["config"]), source=str(path))
    cfg.prior.kind = kind
    state = load_file(str(path))
    if "codebook" not in state:
        raise RunError(f"{path}: the prior carries no codebook; retrain with --fresh")
    prior = build_prior(cfg.prior, state["codebook"], int(meta["code_size"]))
    expected = prior.state_dict()
    bad = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if bad:
        raise RunError(
            f"{path}: weights do not fit the config in its metadata ({bad[0]}); retrain with --fresh"
        )
    prior.load_state_dict(state)
    # defaults of sample_images
    prior.sampling = (cfg.prior.sampling_temperature(), cfg.prior.top_k)
    return prior.eval()


def load_prior(run: Run, kind: str = "dcgan") -> Prior:
    """The trained prior of a run (RUN/prior-<kind>.safetensors), checked against its codebook."""
    if kind not in PRIOR_CLASSES:
        raise RunError(f"prior kind {kind!r}: use one of {', '.join(PRIOR_CLASSES)}")
    prior = load_prior_file(prior_path(run.dir, kind))
    if prior.kind != kind:
        raise RunError(f"{prior_path(run.dir, kind)}: holds a {prior.kind} prior, not {kind}")
    emb = run.vqvae.quantizer.embedding.detach().float().cpu()
    if prior.codebook.shape != emb.shape or not torch.allclose(prior.codebook, emb):
        raise RunError(
            f"{prior_path(run.dir, kind)}: trained on another VQ-VAE codebook than "
            f"{run.dir.vqvae}; retrain the prior with --fresh"
        )
    return prior


def trained_kinds(run: RunDir) -> list[str]:
    """The prior kinds a run folder holds weights for, in PRIOR_KINDS order."""
    return [k for k in PRIOR_KINDS if prior_path(run, k).exists()]
