"""A small decoder-only transformer over raster-ordered code maps (as VQGAN and MONAI do).

The code map (h, w) is read row by row as a sequence of h*w tokens; a start token (index K) comes
first, so the logits at position t predict token t from tokens < t. Pre-norm blocks
(LayerNorm -> causal self-attention -> LayerNorm -> MLP, each with a residual), learned position
embeddings, tied nothing: a model file that reads top to bottom, in the manner of nanoGPT.

Sampling keeps every layer's keys and values (a KV cache), so each new token costs one token's
worth of work against the cache instead of a pass over the whole prefix. ``generate(...,
cache=False)`` recomputes the prefix at each step; a test checks both give the same codes.

Conditions (``levels=True``, ``below=True``, ``covariates=kinds``), each a vector added to every
input token: ``LevelEmbedding`` of the slice's normalised axial level (0 lowest, 1 highest; NaN =
unknown), an embedding of the code at the same position of the map of the slice below (index K =
no slice below), and the covariates' embedding (brainvq.nn.conditions.CovariateEmbedding), which
sampling can follow with classifier-free guidance (``guidance``). Maps of neighbouring slices are spatially aligned, so the code below is where the
code to draw most likely is; raster order is kept because the whole map below is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from brainvq.nn.conditions import CovariateEmbedding, Guide


def band_mask(t: int, window: int, start: int = 0, device=None) -> torch.Tensor:
    """Boolean (t, start + t) mask: query i (at position start + i) sees keys j with
    start + i - window < j <= start + i; window 0 means every earlier key."""
    q = torch.arange(start, start + t, device=device)[:, None]
    k = torch.arange(start + t, device=device)[None, :]
    mask = k <= q
    if window:
        mask &= k > q - window
    return mask


def take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x (B, T, C) at positions rows (B, n) -> (B, n, C)."""
    return x.gather(1, rows[:, :, None].expand(-1, -1, x.shape[2]))


class SelfAttention(nn.Module):
    """Causal self-attention with grouped key/value heads and an optional key/value cache.

    ``kv_heads`` < ``heads`` shares each key/value head among heads // kv_heads query heads
    (grouped-query attention, Ainslie et al., 2023; kv_heads = 1 is multi-query attention,
    Shazeer, 2019). ``window`` > 0 limits each token to the ``window`` latest tokens (itself
    included), the banded local attention of Sparse Transformers (Child et al., 2019). Both shrink
    what one sampling step reads from the cache, which is what bounds sampling speed on a CPU
    (memory bandwidth, not arithmetic); stacked layers still reach back layers * window tokens.
    """

    def __init__(
        self, dim: int, heads: int, kv_heads: int = 1, window: int = 0, causal: bool = True
    ) -> None:
        super().__init__()
        if dim % heads or heads % kv_heads:
            raise ValueError(
                f"width {dim}, {heads} heads, {kv_heads} key/value heads: the width must divide "
                "into the heads and the heads into the key/value heads"
            )
        self.heads, self.kv_heads, self.window, self.causal = heads, kv_heads, window, causal
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, dim + 2 * kv_heads * self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, cache: dict | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, dim). With ``cache`` (keys "k", "v", "len"), x's tokens extend the cache.
        With ``rows`` (B, n) int64 (non-causal, no cache): the output (B, n, dim) at those
        positions only, every token still a key and value (the same values as the full output
        there, for less work where only some positions are wanted)."""
        b, t, d = x.shape
        hd, kvh = self.head_dim, self.kv_heads
        q, k, v = self.qkv(x).split([d, kvh * hd, kvh * hd], dim=-1)
        if rows is not None:
            if self.causal or cache is not None:
                raise ValueError("rows: only for non-causal attention without a cache")
            q = take_rows(q, rows)
        q = q.view(b, q.shape[1], self.heads, hd).transpose(1, 2)
        k = k.view(b, t, kvh, hd).transpose(1, 2)
        v = v.view(b, t, kvh, hd).transpose(1, 2)
        start = 0
        if cache is not None:
            start = cache["len"]
            cache["k"][:, :, start : start + t] = k
            cache["v"][:, :, start : start + t] = v
            cache["len"] = start + t
            first = max(0, start + t - self.window) if self.window and t == 1 else 0
            k = cache["k"][:, :, first : start + t]
            v = cache["v"][:, :, first : start + t]
        if t == 1 and cache is not None:
            # one new token attends to every cached one in reach: a grouped matmul reads each
            # key/value head once for all its query heads
            qg = q.view(b, kvh, self.heads // kvh, hd) * hd**-0.5
            y = ((qg @ k.transpose(-1, -2)).softmax(-1) @ v).view(b, self.heads, 1, hd)
        else:
            # no dropout on the attention weights: on CPU it forces the slow unfused kernel (6x)
            gqa = kvh != self.heads
            if not self.causal:  # every token sees every other (masked-code models)
                y = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
            elif start == 0 and not (self.window and self.window < t):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
            else:
                mask = band_mask(t, self.window, start, device=x.device)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.proj(y.transpose(1, 2).reshape(b, q.shape[2], d))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int,
        window: int,
        dropout: float,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, kv_heads, window, causal)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, cache: dict | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, dim) -> (B, T, dim), or (B, n, dim) at ``rows`` (see SelfAttention)."""
        y = self.drop(self.attn(self.norm1(x), cache, rows))
        x = x + y if rows is None else take_rows(x, rows) + y
        return x + self.drop(self.mlp(self.norm2(x)))


class LevelEmbedding(nn.Module):
    """A level in [0, 1] -> a vector (B, dim): linear interpolation between ``bins`` learned
    vectors spread over [0, 1], so nearby levels share what they learn; NaN (unknown level) ->
    one more learned vector."""

    def __init__(self, dim: int, bins: int = 32) -> None:
        super().__init__()
        self.bins = bins
        self.table = nn.Embedding(bins + 1, dim)  # row `bins`: unknown level

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        lv = levels.float()
        known = ~torch.isnan(lv)
        pos = lv.nan_to_num(0.0).clamp(0, 1) * (self.bins - 1)
        low = pos.floor().long().clamp_max(self.bins - 2) if self.bins > 1 else pos.long() * 0
        frac = (pos - low)[:, None]
        w = self.table.weight
        vec = w[low] * (1 - frac) + w[(low + 1).clamp_max(self.bins - 1)] * frac
        return torch.where(known[:, None], vec, w[self.bins].expand_as(vec))


class CodeTransformer(nn.Module):
    """Logits (B, K, h, w) of each code given the codes before it in raster order."""

    def __init__(
        self,
        codebook_size: int,
        length: int,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        kv_heads: int = 1,
        window: int = 0,
        dropout: float = 0.1,
        causal: bool = True,
        levels: bool = False,
        below: bool = False,
        covariates: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.length = length
        # index K is the start token (the mask token of brainvq.nn.maskgit)
        self.tok = nn.Embedding(codebook_size + 1, dim)
        # conditions (see the module docstring); index K of `below_tok`: no slice below
        self.level = LevelEmbedding(dim) if levels else None
        self.below_tok = nn.Embedding(codebook_size + 1, dim) if below else None
        self.cov = CovariateEmbedding(dim, covariates) if covariates else None
        self.pos = nn.Parameter(torch.zeros(1, length, dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(dim, heads, kv_heads, window, dropout, causal) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, codebook_size)
        nn.init.normal_(self.pos, std=0.02)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def condition(
        self,
        n: int,
        levels: torch.Tensor | None = None,
        below: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """What the conditions add to the inputs of n maps: (n, 1 or length, dim), or None.

        ``levels`` (n,) float (NaN = unknown); ``below`` (n, h, w) codes of the slice below (K =
        none); ``covariates`` (n, C) float (CovariateEmbedding; NaN = unknown). A condition the
        model has but is not given counts as unknown / none; one it lacks is a ValueError."""
        if (
            (levels is not None and self.level is None)
            or (below is not None and self.below_tok is None)
            or (covariates is not None and self.cov is None)
        ):
            raise ValueError("this model was built without that condition")
        dev = self.pos.device
        extra = None
        if self.level is not None:
            lv = torch.full((n,), math.nan, device=dev) if levels is None else levels.to(dev)
            extra = self.level(lv.reshape(n))[:, None]
        if self.below_tok is not None:
            if below is None:
                below = torch.full((n, self.length), self.codebook_size, dtype=torch.long)
            b = self.below_tok(below.reshape(n, self.length).to(dev).long())
            extra = b if extra is None else extra + b
        if self.cov is not None:
            if covariates is None:
                covariates = torch.full((n, len(self.cov.kinds)), math.nan)
            c = self.cov(covariates.reshape(n, -1).to(dev))[:, None]
            extra = c if extra is None else extra + c
        return extra

    def guide(
        self, n: int, levels=None, below=None, covariates=None, guidance: float = 1.0
    ) -> Guide:
        """The conditions of n maps to sample (``condition``), with classifier-free guidance at
        scale ``guidance`` where covariates are given: 1 the conditioned path alone, 0 the
        unconditioned one (covariates unknown) alone, else both (brainvq.nn.conditions)."""
        if covariates is None or guidance == 1:
            return Guide(self.condition(n, levels, below, covariates))
        uncond = self.condition(n, levels, below)
        if guidance == 0:
            return Guide(uncond)
        return Guide(self.condition(n, levels, below, covariates), uncond, float(guidance))

    def _guided(
        self,
        tokens: torch.Tensor,
        start: int,
        caches: list | None,
        guide: Guide,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``_logits`` under a Guide: one pass, or the conditioned and the unconditioned pass
        as one batch (caches then hold twice the maps) mixed by the guidance scale."""
        if not guide.guided:
            return self._logits(tokens, start, caches, guide.cond, rows)
        rows2 = None if rows is None else torch.cat([rows, rows])
        both = self._logits(torch.cat([tokens, tokens]), start, caches, guide.both(), rows2)
        return guide.mix(both)

    def _logits(
        self,
        tokens: torch.Tensor,
        start: int,
        caches: list | None,
        extra: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Inputs tokens (B, T) at positions start .. start+T-1 -> logits (B, T, K); ``extra``
        (from ``condition``) is added to the inputs; with ``rows`` (B, n) (non-causal models, no
        cache), only the logits (B, n, K) at those positions: the last block, the final norm and
        the head run there alone."""
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos[:, start : start + t]
        if extra is not None:
            x = x + (extra if extra.shape[1] == 1 else extra[:, start : start + t])
        x = self.drop(x)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i], rows if i == last else None)
        return self.head(self.norm(x))

    def _caches(self, n: int) -> list[dict]:
        """Empty key/value caches of every layer for n sequences of this model's length."""
        attn, dev = self.blocks[0].attn, self.pos.device
        shape = (n, attn.kv_heads, self.length, attn.head_dim)
        return [
            {"k": torch.zeros(shape, device=dev), "v": torch.zeros(shape, device=dev), "len": 0}
            for _ in self.blocks
        ]

    def _check_size(self, h: int, w: int) -> None:
        """A ValueError unless an h x w map has the length this model was built for."""
        if h * w != self.length:
            raise ValueError(
                f"code maps of {h}x{w} = {h * w} codes; this model takes {self.length}"
            )

    def _inputs(self, flat: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) -> model inputs: the start token, then all codes but the last."""
        bos = torch.full_like(flat[:, :1], self.codebook_size)
        return torch.cat([bos, flat[:, :-1]], dim=1)

    def forward(
        self, codes: torch.Tensor, levels: torch.Tensor | None = None, below=None, covariates=None
    ) -> torch.Tensor:
        """Codes (B, h, w) int64 -> logits (B, K, h, w); position t sees only codes < t (and the
        conditions, see ``condition``)."""
        b, h, w = codes.shape
        self._check_size(h, w)
        extra = self.condition(b, levels, below, covariates)
        logits = self._logits(self._inputs(codes.reshape(b, -1)), 0, None, extra)
        return logits.transpose(1, 2).reshape(b, self.codebook_size, h, w)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        size: tuple[int, int],
        pick: Callable[[torch.Tensor], torch.Tensor],
        cache: bool = True,
        progress: Callable[[int], None] | None = None,
        levels: torch.Tensor | None = None,
        below: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
        guidance: float = 1.0,
    ) -> torch.Tensor:
        """n code maps of ``size`` in raster order; ``pick(logits (n, K)) -> codes (n,)``;
        ``levels``, ``below``, ``covariates``: the conditions (see ``condition``), the
        covariates followed with classifier-free guidance at scale ``guidance`` (``guide``)."""
        h, w = size
        self._check_size(h, w)
        dev = self.pos.device
        guide = self.guide(n, levels, below, covariates, guidance)
        out = torch.full((n, self.length + 1), self.codebook_size, dtype=torch.long, device=dev)
        caches = self._caches(2 * n if guide.guided else n) if cache else None
        for t in range(self.length):
            if cache:
                logits = self._guided(out[:, t : t + 1], t, caches, guide)[:, -1]
            else:
                logits = self._guided(out[:, : t + 1], 0, None, guide)[:, -1]
            out[:, t + 1] = pick(logits)
            if progress is not None and (t + 1) % w == 0:
                progress(w)
        return out[:, 1:].reshape(n, h, w)

    @torch.no_grad()
    def heal(
        self,
        codes: torch.Tensor,
        threshold: float,
        pick: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        progress: Callable[[int], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes (B, h, w) read in raster order, each one whose probability given the codes
        before it, as healed so far, is below ``threshold`` drawn anew (the healing of Pinaya et
        al., Medical Image Analysis 79, 2022). ``pick(logits (m, K), positions (m,)) -> codes (m,)``
        draws them (positions: each code's raster index, so that draws can be tied to places
        rather than to batches). Returns the healed codes, the boolean map of redrawn positions (a draw may
        give the same code back) and ln p of each given code given the healed codes before it,
        all (B, h, w); one cached token step per code."""
        b, h, w = codes.shape
        self._check_size(h, w)
        flat = codes.reshape(b, -1).to(self.pos.device)
        healed, logp = flat.clone(), torch.zeros(flat.shape, device=flat.device)
        floor = math.log(threshold) if threshold > 0 else -math.inf
        caches = self._caches(b)
        extra = self.condition(b)  # a conditioned model reads these slices' level as unknown
        token = torch.full((b, 1), self.codebook_size, dtype=torch.long, device=flat.device)
        for t in range(self.length):
            logits = self._logits(token, t, caches, extra)[:, -1].float()
            logp[:, t] = logits.log_softmax(-1).gather(1, flat[:, t : t + 1]).squeeze(1)
            low = logp[:, t] < floor
            if low.any():
                healed[low, t] = pick(logits[low], torch.full((int(low.sum()),), t))
            token = healed[:, t : t + 1]
            if progress is not None and (t + 1) % w == 0:
                progress(w)
        logp = logp.view(b, h, w)
        return healed.view(b, h, w), logp < floor, logp
