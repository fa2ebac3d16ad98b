"""Batches straight from a uint8 array: one vectorised gather and one conversion per batch."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader


class BatchedSlices(torch.utils.data.Dataset):
    """uint8 (N, S, S) slices served a batch at a time as float (B, 1, S, S) in [0, 1]."""

    def __init__(self, slices: np.ndarray) -> None:
        self.slices = slices

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.__getitems__([i])[0]

    def __getitems__(self, idx: list[int]) -> torch.Tensor:
        order = np.sort(np.asarray(idx))  # sorted reads are kind to memory maps
        batch = np.take(self.slices, order, axis=0)
        return torch.from_numpy(batch).unsqueeze(1).float().div_(255.0)


def _identity(batch):
    return batch


def slice_loader(
    slices: np.ndarray,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    drop_last: bool = False,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over uint8 slices that fetches whole batches at once."""
    ds = BatchedSlices(slices)
    # a plain batch_size/shuffle loader: the fetcher still calls __getitems__ once per batch, and
    # Lightning can swap in a DistributedSampler under DDP
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        drop_last=drop_last and len(ds) >= batch_size,
        collate_fn=_identity,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


class LevelledCodes(torch.utils.data.Dataset):
    """Code maps with their conditions: item i is (codes[i], level[i], the map of the slice
    below or K everywhere where there is none), gathered per item so no second copy of the maps
    is kept. ``below`` (N,) holds each map's index of the slice below, or -1. With
    ``covariates`` (N, C) (the network's inputs, brainvq.priors.covariates), item i ends with
    covariates[i] too."""

    def __init__(
        self,
        codes: torch.Tensor,
        levels: np.ndarray,
        below: np.ndarray,
        codebook_size: int,
        covariates: np.ndarray | None = None,
    ) -> None:
        self.codes = codes
        self.levels = torch.as_tensor(np.asarray(levels, dtype=np.float32))
        self.below = torch.as_tensor(np.asarray(below, dtype=np.int64))
        self.none = torch.full(codes.shape[1:], codebook_size, dtype=codes.dtype)
        self.covariates = None
        if covariates is not None:
            self.covariates = torch.as_tensor(np.asarray(covariates, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int):
        j = int(self.below[i])
        item = (self.codes[i], self.levels[i], self.codes[j] if j >= 0 else self.none)
        return item if self.covariates is None else (*item, self.covariates[i])
