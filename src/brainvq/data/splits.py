"""One split helper for every split brainvq makes itself: plain folders, a missing validate or test
split, the embedded data, NIfTI folders and raw OASIS-1."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "validate", "test")


def seeded_split(items: list, fractions: dict[str, float], seed: int) -> dict[str, list]:
    """Split items by a seeded permutation: each named split takes its fraction of them (rounded;
    at least one when its fraction is > 0 and there are 3 or more items), train the rest, and
    train keeps at least one. Each split comes back sorted."""
    n = len(items)
    counts = {}
    for name, frac in fractions.items():
        k = int(round(frac * n))
        if frac > 0 and n >= 3:
            k = max(k, 1)
        counts[name] = k
    while sum(counts.values()) > max(n - 1, 0):  # train keeps at least one item
        largest = max(counts, key=lambda name: counts[name])
        counts[largest] -= 1
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, k in counts.items():
        out[name] = sorted((items[i] for i in order[start : start + k]), key=str)
        start += k
    out["train"] = sorted((items[i] for i in order[start:]), key=str)
    return out
