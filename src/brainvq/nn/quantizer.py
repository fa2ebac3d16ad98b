"""Vector quantizer with the tricks that keep a codebook alive.

Each trick is one keyword argument:
- ``ema``: codebook updated as exponential moving averages of assigned encoder outputs instead of
  by gradients (van den Oord et al., 2017, appendix A.1).
- ``dead_code_threshold``: codes whose moving-average usage falls below the threshold are re-seeded
  from encoder outputs of the current batch (codebook restart, Dhariwal et al., 2020, "Jukebox").
- ``kmeans_init``: the codebook starts as k-means centroids of the first batch (Zeghidour et al.,
  2021, "SoundStream").

Distances and updates run in float32 even under autocast. Under torch.distributed the EMA counts and
sums are all-reduced and restarts are chosen on rank 0 and broadcast, so every rank keeps the same
codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    """What one quantizer pass returns."""

    quantized: torch.Tensor  # (B, D, h, w), straight-through: gradients flow to the encoder
    codes: torch.Tensor  # (B, h, w) int64
    loss: torch.Tensor  # commitment (+ codebook, without EMA) loss
    perplexity: torch.Tensor  # exp(entropy) of the batch's code distribution
    usage: torch.Tensor  # share of the codebook used in the batch


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def nearest_codes(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (K, D) for each row of flat (N, D), in float32."""
    emb = codebook.float()
    dist2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ emb.t() + emb.pow(2).sum(1)[None, :]
    return dist2.argmin(dim=1)


def embed_codes(codes: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Code map (B, h, w) -> embedded map (B, D, h, w) of codebook rows (K, D)."""
    return F.embedding(codes, codebook.float()).permute(0, 3, 1, 2).contiguous()


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None):
    """Lloyd k-means of rows of x (N, D) into k centroids, seeded by k-means++ (D^2 sampling)."""
    n = x.shape[0]
    first = int(torch.randint(0, n, (1,), generator=generator))
    centroids = [x[first]]
    d2 = (x - x[first]).pow(2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than codes: repeat points
            nxt = int(torch.randint(0, n, (1,), generator=generator))
        else:
            nxt = int(torch.multinomial((d2 / total).cpu(), 1, generator=generator))
        centroids.append(x[nxt])
        d2 = torch.minimum(d2, (x - x[nxt]).pow(2).sum(1))
    c = torch.stack(centroids).clone()
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None]
    return c


class VectorQuantizer(nn.Module):
    """Maps each D-dim vector of a (B, D, h, w) map to its nearest of K codebook vectors."""

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_code_threshold: float = 1.0,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.beta = beta
        self.ema = ema
        self.decay = decay
        self.eps = eps
        self.dead_code_threshold = dead_code_threshold
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters

        init = torch.randn(codebook_size, code_dim) * (1.0 / code_dim**0.5)
        if ema:
            self.register_buffer("embedding", init)
        else:
            self.embedding = nn.Parameter(init)
        # Moving averages: assignments per batch for each code, and the sum of assigned vectors.
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", init.clone())
        self.register_buffer("initted", torch.tensor(not kmeans_init))

    # -- lookups ----------------------------------------------------------------------------
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of flat (N, D)."""
        return nearest_codes(flat, self.embedding)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code map (B, h, w) -> embedded map (B, D, h, w)."""
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"code indices must lie in [0, {self.codebook_size})")
        return embed_codes(codes, self.embedding)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z (B, D, h, w); in training mode also update the codebook."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            b, d, h, w = z.shape
            flat = z.permute(0, 2, 3, 1).reshape(-1, d)
            if self.training and not bool(self.initted):
                self._kmeans_init(flat.detach())
            codes = self.nearest(flat.detach())
            onehot_counts = torch.bincount(codes, minlength=self.codebook_size).float()
            if self.training:
                self._update(flat.detach(), codes, onehot_counts)
            q_flat = F.embedding(codes, self.embedding.float())
            quantized = q_flat.view(b, h, w, d).permute(0, 3, 1, 2)
            commit = F.mse_loss(z, quantized.detach())
            if self.ema:
                loss = self.beta * commit
            else:
                loss = F.mse_loss(quantized, z.detach()) + self.beta * commit
            quantized = z + (quantized - z).detach()  # straight-through estimator
            probs = onehot_counts / onehot_counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            usage = (onehot_counts > 0).float().mean()
        return QuantizerOutput(quantized, codes.view(b, h, w), loss, perplexity, usage)

    # -- codebook maintenance -----------------------------------------------------------------
    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        if _distributed():
            # every rank must start from the same codebook: rank 0 computes it
            centroids = kmeans(flat[:20000], self.codebook_size, self.kmeans_iters)
            dist.broadcast(centroids, src=0)
        else:
            centroids = kmeans(flat[:20000], self.codebook_size, self.kmeans_iters)
        self.embedding.data.copy_(centroids)
        self.embed_sum.copy_(centroids)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros(self.codebook_size, self.code_dim, device=flat.device)
        sums.index_add_(0, codes, flat)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.ema:
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            # Laplace smoothing keeps unused codes from dividing by zero
            smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
            self.embedding.data.copy_(self.embed_sum / smoothed[:, None])
        if self.dead_code_threshold > 0:
            self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
        fresh = flat[pick].clone()
        if _distributed():
            dist.broadcast(fresh, src=0)
        self.embedding.data[dead] = fresh
        # restarted codes begin with the threshold's worth of usage so they get a chance to attract
        self.cluster_size[dead] = self.dead_code_threshold
        self.embed_sum[dead] = fresh * self.dead_code_threshold
