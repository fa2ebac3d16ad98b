"""One split helper for every split brainvq makes itself: plain folders, a missing validate or test
split, the embedded data, NIfTI folders and raw OASIS-1. Given each item's group (its subject),
it splits groups, so no subject has items in two splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPLITS = ("train", "validate", "test")


def seeded_split(
    items: list,
    fractions: dict[str, float],
    seed: int,
    groups: Sequence | None = None,
) -> dict[str, list]:
    """Split items by a seeded permutation of their groups: each named split takes its fraction of
    the groups (rounded; at least one when its fraction is > 0 and there are 3 or more groups),
    train the rest, and train keeps at least one. ``groups`` gives each item's group (its
    subject); an item whose group is None or "" is a group of its own, and without ``groups``
    every item is (a split by item). Each split comes back sorted."""
    if groups is None:
        keys: list = list(range(len(items)))
    else:
        if len(groups) != len(items):
            raise ValueError(f"{len(groups)} groups for {len(items)} items")
        keys = [g if g else ("", i) for i, g in enumerate(groups)]
    units = list(dict.fromkeys(keys))  # each group once, in order of first appearance
    members: dict = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(items[i])
    n = len(units)
    counts = {}
    for name, frac in fractions.items():
        k = int(round(frac * n))
        if frac > 0 and n >= 3:
            k = max(k, 1)
        counts[name] = k
    while sum(counts.values()) > max(n - 1, 0):  # train keeps at least one group
        largest = max(counts, key=lambda name: counts[name])
        counts[largest] -= 1
    order = np.random.default_rng(seed).permutation(n)

    def take(picked) -> list:
        return sorted((item for j in picked for item in members[units[j]]), key=str)

    out, start = {}, 0
    for name, k in counts.items():
        out[name] = take(order[start : start + k])
        start += k
    out["train"] = take(order[start:])
    return out
