"""A masked-code transformer (MaskGIT, Chang et al., 2022) over code maps.

A bidirectional transformer sees a code map in which some codes are hidden behind a mask token
(index K) and predicts every code. Training hides a random share of each map, the share drawn from
a cosine schedule, and is scored on the hidden codes only.

Sampling is iterative parallel decoding: start from a map with every code hidden; at each of a few
steps draw all hidden codes at once, keep the ones the model is most confident of and hide the rest
again, so that the share still hidden follows the same cosine schedule down to none. Confidence is
the drawn code's log-probability plus Gumbel noise whose scale falls linearly to zero over the
steps (MaskGIT's "choice temperature"): early steps pick positions more freely. A map costs
``steps`` full passes of the network, against one cached token step per code for the raster-order
transformer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from brainvq.nn.transformer import CodeTransformer


def hidden_share(progress: torch.Tensor | float) -> torch.Tensor:
    """The cosine schedule: share of codes hidden at progress in [0, 1] (1 at 0, 0 at 1)."""
    return torch.cos(torch.as_tensor(progress, dtype=torch.float32) * math.pi / 2)


def hidden_count(share: float, total: int) -> int:
    """How many of ``total`` codes a fixed ``share`` hides: rounded, at least one, at most all."""
    return min(total, max(1, round(share * total)))


class MaskedCodeTransformer(CodeTransformer):
    """Logits (B, K, h, w) of every code of a map whose hidden codes hold the mask token K."""

    def __init__(
        self,
        codebook_size: int,
        length: int,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        kv_heads: int = 1,
        dropout: float = 0.0,
        levels: bool = False,
        below: bool = False,
        covariates: tuple[int, ...] = (),
    ) -> None:
        super().__init__(
            codebook_size, length, dim, layers, heads, kv_heads, 0, dropout, False, levels, below,
            covariates,
        )  # fmt: skip
        self.mask_token = codebook_size

    def _inputs(self, flat: torch.Tensor) -> torch.Tensor:
        """The tokens themselves (no shift): ``forward`` maps tokens (B, h, w) in [0, K],
        K = hidden, to logits (B, K, h, w) of every position given every visible code."""
        return flat

    def hide(
        self,
        codes: torch.Tensor,
        generator: torch.Generator | None = None,
        share: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """codes (B, h, w) with some of each map's codes hidden, at random positions.

        ``share`` None (training): each map hides a share drawn from the cosine schedule; a float
        in (0, 1]: every map hides that share, rounded to whole codes. Returns (tokens with the
        mask token where hidden, boolean hidden mask), both (B, h, w). At least one code of each
        map is hidden. ``generator`` (CPU) makes it repeatable."""
        b = codes.shape[0]
        flat = codes.reshape(b, -1)
        t = flat.shape[1]
        if share is None:
            r = torch.rand(b, 1, generator=generator)
            n_hidden = (hidden_share(r) * t).ceil().clamp(1, t)
        else:
            n_hidden = torch.full((b, 1), hidden_count(share, t))
        n_hidden = n_hidden.to(flat.device)
        rank = torch.rand(b, t, generator=generator).argsort(1).argsort(1).to(flat.device)
        hidden = rank < n_hidden
        return flat.masked_fill(hidden, self.mask_token).view_as(codes), hidden.view_as(codes)

    @torch.no_grad()
    def redraw(
        self,
        codes: torch.Tensor,
        hidden: torch.Tensor,
        pick: Callable[[torch.Tensor], torch.Tensor],
        levels: torch.Tensor | None = None,
        below: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """codes (B, h, w) with the codes where ``hidden`` (B, h, w, bool) is set drawn anew, all
        at once, given the visible rest: one network pass, the kind of local slip that parallel
        decoding makes."""
        flat = codes.reshape(len(codes), -1)
        hid = hidden.reshape(flat.shape).to(flat.device)
        tokens = flat.masked_fill(hid, self.mask_token)
        out = flat.clone()
        extra = self.condition(len(flat), levels, below)
        out[hid] = pick(self._logits(tokens, 0, None, extra)[hid])
        return out.view_as(codes)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        size: tuple[int, int],
        pick: Callable[[torch.Tensor], torch.Tensor],
        steps: int,
        noise: float,
        generator: torch.Generator,
        progress: Callable[[int], None] | None = None,
        start: torch.Tensor | None = None,
        chunk: int = 4,
        levels: torch.Tensor | None = None,
        below: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
        guidance: float = 1.0,
    ) -> torch.Tensor:
        """n code maps of ``size`` in ``steps`` parallel steps.

        ``pick(logits (m, K)) -> codes (m,)`` draws the hidden codes; ``noise`` scales the Gumbel
        noise on the confidences (0 = keep strictly the most confident); ``generator`` (CPU)
        draws that noise. ``start`` (n, h, w): tokens to finish instead of all-hidden maps, the
        same number hidden (the mask token) in each; decoding joins the schedule at the step
        where that share is still hidden, and visible codes are never changed.

        The network runs ``chunk`` maps at a time (small chunks stay in the CPU's caches) and
        only where codes are hidden at its last block and head; from all-hidden maps the first
        step's logits, the same for every map, are computed once. None of this changes the
        maps: the draws take the generator's numbers in the same order as one pass over all n
        maps would, and each logit is computed the same way. ``levels``,
        ``below``, ``covariates``: the conditions (brainvq.nn.transformer.CodeTransformer
        .condition; the covariates followed with classifier-free guidance at scale ``guidance``,
        CodeTransformer.guide); with conditions the first step's logits differ per map and are
        not shared."""
        h, w = size
        self._check_size(h, w)
        t = h * w
        guide = self.guide(n, levels, below, covariates, guidance)
        tokens, n_hidden = self._start_tokens(n, t, start)
        # progress r at which the cosine schedule has n_hidden / t still hidden
        first = int(math.floor(steps * 2 / math.pi * math.acos(min(1.0, n_hidden / t))))
        all_hidden = n_hidden == t and guide.cond is None  # conditioned maps differ at once
        for s in range(min(first, steps - 1) if n_hidden else steps, steps):
            # every map has n_hidden codes hidden; rows: where, in raster order
            rows = (tokens == self.mask_token).nonzero()[:, 1].view(n, n_hidden)
            drawn, conf = self._draw(tokens, rows, pick, guide, chunk, all_hidden)
            all_hidden = False
            tokens.scatter_(1, rows, drawn)
            # every map has the same number hidden: each step reveals at least one code and the
            # last step reveals all
            keep = 0 if s == steps - 1 else int(math.floor(hidden_share((s + 1) / steps) * t))
            keep = max(0, min(keep, n_hidden - 1))
            if keep:
                u = torch.rand(n, t, generator=generator).clamp_(1e-9, 1 - 1e-9).to(tokens.device)
                conf = conf + noise * (1 - (s + 1) / steps) * -torch.log(-torch.log(u))
                rehide = conf.topk(keep, dim=1, largest=False).indices
                tokens.scatter_(1, rehide, self.mask_token)
            if progress is not None:
                progress(n_hidden - keep)
            n_hidden = keep
            if not n_hidden:
                break
        return tokens.reshape(n, h, w)

    def _start_tokens(self, n: int, t: int, start: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        """The (n, t) tokens decoding starts from (all hidden, or ``start``) and how many codes
        each hides; ValueError if the start maps hide different numbers."""
        dev = self.pos.device
        if start is None:
            tokens = torch.full((n, t), self.mask_token, dtype=torch.long, device=dev)
        else:
            tokens = start.reshape(n, t).to(dev).clone()
        counts = (tokens == self.mask_token).sum(1)
        n_hidden = int(counts[0]) if n else 0
        if not (counts == n_hidden).all():
            raise ValueError("start maps must each hide the same number of codes")
        return tokens, n_hidden

    def _draw(
        self,
        tokens: torch.Tensor,
        rows: torch.Tensor,
        pick: Callable[[torch.Tensor], torch.Tensor],
        guide,
        chunk: int,
        all_hidden: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step's draws at the hidden positions ``rows`` (n, n_hidden), ``chunk``
        maps at a time, and the (n, t) confidences (ln p of each drawn code; inf where visible).
        ``all_hidden``: every map is still all hidden and unconditioned, so the first map's
        logits serve all."""
        n, n_hidden = rows.shape
        drawn = torch.empty(n, n_hidden, dtype=torch.long, device=tokens.device)
        conf = torch.full(tokens.shape, math.inf, device=tokens.device)
        shared = self._logits(tokens[:1], 0, None, None, rows[:1]) if all_hidden else None
        for c in range(0, n, chunk):
            m = min(chunk, n - c)
            if shared is not None:  # all hidden: every map's logits are the first one's
                logits = shared.expand(m, -1, -1).reshape(m * n_hidden, -1)
            else:
                part = guide.part(c, m)
                logits = self._guided(tokens[c : c + m], 0, None, part, rows[c : c + m])
                logits = logits.reshape(m * n_hidden, -1)
            codes = pick(logits)
            logp = logits.float().log_softmax(-1).gather(1, codes[:, None])
            drawn[c : c + m] = codes.view(m, n_hidden)
            conf[c : c + m].scatter_(1, rows[c : c + m], logp.view(m, n_hidden))
        return drawn, conf

    @torch.no_grad()
    def code_log_probs(self, codes: torch.Tensor, block: int = 1) -> torch.Tensor:
        """ln p of each code of codes (B, h, w) given the codes around it, (B, h, w): four passes,
        each hiding a quarter of the map as block x block squares on a lattice of period 2 *
        block (shifted by block across and down between passes) and scoring the hidden codes."""
        b, h, w = codes.shape
        self._check_size(h, w)
        codes = codes.to(self.pos.device)
        ys = torch.arange(h, device=codes.device)[:, None] // block % 2
        xs = torch.arange(w, device=codes.device)[None, :] // block % 2
        out = torch.zeros(codes.shape, device=codes.device)
        for dy in (0, 1):
            for dx in (0, 1):
                hidden = (ys == dy) & (xs == dx)
                tokens = codes.masked_fill(hidden, self.mask_token)
                logp = self(tokens).float().log_softmax(1).gather(1, codes[:, None])[:, 0]
                out = torch.where(hidden, logp, out)
        return out

    @torch.no_grad()
    def fill(
        self,
        codes: torch.Tensor,
        hidden: torch.Tensor,
        pick: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        steps: int,
    ) -> torch.Tensor:
        """codes (B, h, w) with the codes where ``hidden`` (B, h, w, bool) is set drawn anew given
        the rest in ``steps`` parallel passes: each pass draws every code still hidden and keeps
        the most confident, so that each map's share still hidden follows the cosine schedule
        (maps may hide different numbers). ``pick(logits (m, K), positions (m,)) -> codes (m,)``
        draws them (positions: raster indices, so that draws can be tied to places)."""
        b, h, w = codes.shape
        self._check_size(h, w)
        flat = codes.reshape(b, -1).to(self.pos.device)
        hid = hidden.reshape(flat.shape).to(flat.device)
        tokens = flat.masked_fill(hid, self.mask_token)
        total = hid.sum(1, keepdim=True)
        extra = self.condition(b)  # a conditioned model reads these slices' level as unknown
        for s in range(steps):
            still = tokens == self.mask_token
            if not still.any():
                break
            logits = self._logits(tokens, 0, None, extra)[still].float()  # (m, K)
            drawn = tokens.clone()
            drawn[still] = pick(logits, still.nonzero()[:, 1])
            conf = torch.full(tokens.shape, math.inf, device=tokens.device)
            conf[still] = logits.log_softmax(-1).gather(1, drawn[still][:, None])[:, 0]
            left = (hidden_share((s + 1) / steps) * total).floor().long()
            left = 0 if s == steps - 1 else torch.minimum(left, still.sum(1, keepdim=True) - 1)
            rank = conf.argsort(1).argsort(1)  # 0 = least confident
            tokens = drawn.masked_fill(still & (rank < left), self.mask_token)
        return tokens.view(b, h, w)
