"""Draw new slices: prior -> code maps -> VQ-VAE decoder, with PNG and grid output."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brainvq.report import image_grid
from brainvq.runs import Run, atomic_write_bytes


def _drawn(run: Run, prior, draw, n: int, batch_size: int, temperature, top_k) -> dict:
    """Code maps from ``draw(temperature, top_k)`` decoded to images, timed: the dict that
    sample_images and vary_images return."""
    from brainvq.decoder_tuning import tuned_vqvae

    t0 = time.perf_counter()
    tuned = tuned_vqvae(run, prior.kind)
    vq = run.vqvae if tuned is None else tuned
    t_default, k_default = getattr(prior, "sampling", (1.0, 0))
    temperature = t_default if temperature is None else temperature
    top_k = k_default if top_k is None else top_k
    codes = draw(temperature, top_k)
    images = vq.decode(codes, batch_size)[:, 0]
    seconds = time.perf_counter() - t0
    return {
        "codes": codes,
        "images": images.numpy(),
        "seconds": seconds,
        "samples_per_second": n / max(seconds, 1e-9),
        "temperature": temperature,
        "top_k": top_k,
        "decoder": "vqvae" if tuned is None else "tuned",
    }


@torch.no_grad()
def sample_images(
    run: Run,
    prior,
    n: int,
    seed: int = 0,
    batch_size: int = 8,
    temperature: float | None = None,
    top_k: int | None = None,
    progress: bool = False,
) -> dict:
    """n samples: code maps (n, h, w) int64, images (n, S, S) float in [0, 1], samples/second,
    the temperature / top_k used (by default those in the prior's own config), and which decoder
    made the images: "tuned" where the run holds a decoder tuned to this prior
    (brainvq.decoder_tuning), else "vqvae". The decoder takes ``batch_size`` maps at a time:
    on a CPU, 8 decoded twice as fast per slice as 64 (the activations of a few maps stay in the
    caches, and fresh memory for large ones costs page faults); the images are the same up to
    float rounding (2e-7 on one thread, bit-equal on two).
    """

    def draw(t, k):
        return prior.sample(n, seed=seed, temperature=t, top_k=k, progress=progress)

    return _drawn(run, prior, draw, n, batch_size, temperature, top_k)


@torch.no_grad()
def vary_images(
    run: Run,
    prior,
    codes: torch.Tensor,
    n: int,
    share: float,
    seed: int = 0,
    batch_size: int = 8,
    temperature: float | None = None,
    top_k: int | None = None,
    progress: bool = False,
) -> dict:
    """n variations of the given code maps (B, h, w), taken in turn (variation i is of map
    i mod B), with ``share`` of each one's codes redrawn by the prior (Prior.vary): the same
    dict as sample_images plus "anchor" (n,), the index of each variation's map."""
    anchor = torch.arange(n) % len(codes)

    def draw(t, k):
        return prior.vary(codes[anchor], share, seed, t, k, progress=progress)

    out = _drawn(run, prior, draw, n, batch_size, temperature, top_k)
    out["anchor"] = anchor.numpy()
    return out


def write_samples(images: np.ndarray, folder: Path, prefix: str = "sample") -> Path:
    """Each image as an 8-bit PNG plus grid.png, in folder; returns the grid's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
        atomic_write_bytes(folder / f"{prefix}_{i:04d}.png", buf.getvalue())
    return image_grid(images[:64], folder / "grid.png")
