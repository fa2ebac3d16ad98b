"""Gated PixelCNN (van den Oord et al., 2016) over code maps: the prior of the VQ-VAE paper.

Two stacks remove the blind spot of a plain masked PixelCNN:

- the *vertical* stack sees every row above the current one. Its input is the embedded map shifted
  down by one row, and each layer's (2, kernel) convolution looks at the row itself and the row
  above, so ``v[r]`` depends on code rows ``< r`` only, at every depth;
- the *horizontal* stack sees the current row to the left. Its input is the embedded map shifted
  right by one column, each layer's (1, kernel//2 + 1) convolution looks left, and it receives
  the vertical stack's features of its own row through a 1x1 convolution.

Each layer is gated, ``tanh(a) * sigmoid(b)``, with residual connections in both stacks. Because
every dependency is "this row and the row above" (vertical) or "this column and those to the left"
(horizontal), sampling needs no full forward pass per code: ``sample`` computes the vertical stack
one row at a time and the horizontal stack one position at a time from small caches, the same
numbers as ``forward`` (a test checks it), at about the cost of one forward pass per map.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def gate(x: torch.Tensor) -> torch.Tensor:
    """tanh(first half) * sigmoid(second half) along the channel axis."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: (v, h) -> (v', h'); ``v'[r]`` sees rows < r, ``h'[r, c]`` columns < c."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        c = channels
        self.half = kernel // 2
        self.v_conv = nn.Conv2d(c, 2 * c, (2, kernel))
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_conv = nn.Conv2d(c, 2 * c, (1, self.half + 1))
        self.h_out = nn.Conv2d(c, c, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.half
        v_pre = self.v_conv(F.pad(v, (k, k, 1, 0)))  # row r from rows r-1, r
        h_pre = self.h_conv(F.pad(h, (k, 0, 0, 0))) + self.v_to_h(v_pre)  # cols c-k .. c
        return v + gate(v_pre), h + self.h_out(gate(h_pre))


class GatedPixelCNN(nn.Module):
    """Logits (B, K, h, w) of each code given the codes above and to the left of it."""

    def __init__(self, codebook_size: int, channels: int = 64, layers: int = 10, kernel: int = 5):
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"kernel {kernel}: must be odd and >= 3")
        self.codebook_size = codebook_size
        self.embed = nn.Embedding(codebook_size, channels)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel) for _ in range(layers))
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(),
            nn.Conv2d(channels, codebook_size, 1),
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) int64 -> logits (B, K, h, w); position (r, c) sees only earlier codes."""
        x = self.embed(codes).permute(0, 3, 1, 2)
        v = F.pad(x, (0, 0, 1, 0))[:, :, :-1]  # shifted down one row
        h = F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]  # shifted right one column
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        size: tuple[int, int],
        pick: Callable[[torch.Tensor], torch.Tensor],
        progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """n code maps of ``size`` in raster order; ``pick(logits (n, K)) -> codes (n,)``.

        The vertical stack is advanced one row at a time (each layer keeps the row above), the
        horizontal stack one position at a time (each layer keeps its current row).
        """
        rows, cols = size
        dev = self.embed.weight.device
        c = self.embed.embedding_dim
        codes = torch.zeros(n, rows, cols, dtype=torch.long, device=dev)
        zero_row = torch.zeros(n, c, 1, cols, device=dev)
        v_above = [zero_row] * len(self.layers)  # v input of each layer at the previous row
        for r in range(rows):
            # vertical stack at row r: its input is the embedded row r-1
            v = self.embed(codes[:, r - 1]).permute(0, 2, 1)[:, :, None] if r else zero_row
            links = []
            for i, layer in enumerate(self.layers):
                k = layer.half
                v_pre = layer.v_conv(F.pad(torch.cat([v_above[i], v], dim=2), (k, k, 0, 0)))
                links.append(layer.v_to_h(v_pre))  # (n, 2c, 1, cols)
                v_above[i] = v
                v = v + gate(v_pre)
            # horizontal stack along row r; hs[i] holds layer i's input row, left-padded by k
            hs = [torch.zeros(n, c, 1, cols + layer.half, device=dev) for layer in self.layers]
            for col in range(cols):
                for i, layer in enumerate(self.layers):
                    k = layer.half
                    window = hs[i][:, :, :, col : col + k + 1]
                    pre = layer.h_conv(window) + links[i][:, :, :, col : col + 1]
                    out = hs[i][:, :, :, col + k : col + k + 1] + layer.h_out(gate(pre))
                    if i + 1 < len(self.layers):
                        hs[i + 1][:, :, :, col + self.layers[i + 1].half] = out[:, :, :, 0]
                codes[:, r, col] = pick(self.head(out)[:, :, 0, 0])
                if col + 1 < cols:  # the new code is the next position's shifted input
                    hs[0][:, :, 0, col + 1 + self.layers[0].half] = self.embed(codes[:, r, col])
            if progress is not None:
                progress(cols)
        return codes
