"""Code maps of a run's data: encoded once with the trained VQ-VAE and cached in RUN/codes/."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from brainvq.data import atomic_save_npy, load_splits
from brainvq.progress import Progress
from brainvq.runs import Run


@torch.no_grad()
def encode_images(
    run: Run, images: np.ndarray, batch_size: int = 64, done: Callable[[int], None] | None = None
) -> np.ndarray:
    """uint8 slices (N, S, S) -> int64 code maps (N, h, w); ``done(k)`` after each k encoded."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[i : i + batch_size])).float().div(255)[:, None]
        out.append(run.vqvae.encode(x).numpy())
        if done is not None:
            done(len(x))
    return np.concatenate(out).astype(np.int64)


def code_maps(
    run: Run, data: str, fresh: bool = False, progress: bool = False
) -> dict[str, np.ndarray]:
    """Code maps of every split, from RUN/codes/SPLIT.npy or encoded now and cached there
    (``progress``: show the encoding)."""
    folder = run.dir.path / "codes"
    splits = ("train", "validate", "test")
    paths = {s: folder / f"{s}.npy" for s in splits}
    stamp = run.dir.vqvae.stat().st_mtime_ns
    stale = fresh or any(not p.exists() or p.stat().st_mtime_ns < stamp for p in paths.values())
    if not stale:
        return {s: np.load(p).astype(np.int64) for s, p in paths.items()}
    arrays = load_splits(data, run.config.data, progress=False)
    result = {}
    total = sum(len(arrays[s]) for s in splits)
    with Progress(total, "encoding slices into code maps", "slice", progress) as bar:
        for s in splits:
            codes = encode_images(run, arrays[s], run.config.eval.batch_size, bar.update)
            small = codes.max(initial=0) < 2**15
            atomic_save_npy(paths[s], codes.astype(np.int16 if small else np.int32))
            result[s] = codes
    return result
