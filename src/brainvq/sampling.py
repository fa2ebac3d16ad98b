"""Draw new slices: prior -> code maps -> VQ-VAE decoder (or the decoder tuned to that prior),
with PNG and grid output."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brainvq.codes import encode_images
from brainvq.data import read_named_slices
from brainvq.errors import RunError
from brainvq.io import atomic_write_bytes
from brainvq.priors import load_prior, pick_kind
from brainvq.priors.tuned_decoder import tuned_vqvae
from brainvq.runs import Run, load_run


def _drawn(run: Run, prior, draw, n: int, batch_size: int, temperature, top_k) -> dict:
    """Code maps from ``draw(temperature, top_k)`` decoded to images, timed: the dict that
    sample_images and vary_images return."""
    t0 = time.perf_counter()
    tuned = tuned_vqvae(run, prior.kind)
    vq = run.vqvae if tuned is None else tuned
    t_default, k_default = prior.sampling
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
    batch_size: int = 64,
    temperature: float | None = None,
    top_k: int | None = None,
    progress: bool = False,
) -> dict:
    """n samples: code maps (n, h, w) int64, images (n, S, S) float in [0, 1], samples/second,
    the seed, the temperature / top_k used (by default those in the prior's own config), and which decoder
    made the images: "tuned" where the run holds a decoder tuned to this prior
    (brainvq.training.decoder), else "vqvae".
    """

    def draw(t, k):
        return prior.sample(n, seed=seed, temperature=t, top_k=k, progress=progress)

    return {**_drawn(run, prior, draw, n, batch_size, temperature, top_k), "seed": seed}


@torch.no_grad()
def vary_images(
    run: Run,
    prior,
    codes: torch.Tensor,
    n: int,
    share: float,
    seed: int = 0,
    batch_size: int = 64,
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
    out["anchor"], out["seed"] = anchor.numpy(), seed
    return out


def sample_run(
    run_path: str | Path,
    kind: str | None = None,
    n: int = 64,
    seed: int = 0,
    temperature: float | None = None,
    top_k: int | None = None,
    out: str | Path | None = None,
    like: list[str] | None = None,
    redraw: float | None = None,
    progress: bool = False,
) -> dict:
    """What `brainvq sample` does: n slices from the run's prior written as PNGs and a grid.

    Args:
        run_path: run folder with a trained prior.
        kind: which prior (default: the run's prior.kind if trained, else one it holds).
        n, seed: how many, and the seed (the same seed gives the same slices).
        temperature, top_k: sampling (default: the prior's own config).
        out: output folder (default RUN/samples).
        like: slices (files or folders) to draw variations of instead (maskgit): each encoded,
            ``redraw`` of its codes (default 0.5) hidden and drawn anew given the rest.
        redraw: with ``like``, the share of each slice's codes drawn anew, in (0, 1].
        progress: show a progress bar.

    Returns the sample_images / vary_images dict plus "kind", "out", "grid" and, with ``like``,
    "files", "pairs" (each slice above its variation) and "changed" (share of codes changed)."""
    if n < 1:
        raise RunError(f"-n {n}: ask for at least one sample")
    if redraw is not None and not like:
        raise RunError("--redraw: only with --like IMAGE... (the slices to draw variations of)")
    run = load_run(run_path)
    kind = pick_kind(run, kind)
    prior = load_prior(run, kind)
    folder = Path(out) if out else run.dir.path / "samples"
    if not like:
        drawn = sample_images(run, prior, n, seed, 64, temperature, top_k, progress)
        drawn.update(kind=kind, out=folder, grid=write_samples(drawn["images"], folder))
        return drawn
    share = 0.5 if redraw is None else redraw
    files, images = read_named_slices(like, run.config.data.image_size)
    codes = torch.from_numpy(encode_images(run, images, run.config.eval.batch_size))
    drawn = vary_images(run, prior, codes, n, share, seed, 64, temperature, top_k, progress)
    grid = write_samples(drawn["images"], folder, prefix="variation")
    shown = min(8, n)
    originals = images[drawn["anchor"][:shown]] / 255.0
    both = np.concatenate([originals, drawn["images"][:shown]])
    changed = (drawn["codes"] != codes[drawn["anchor"]]).float().mean().item()
    drawn.update(kind=kind, out=folder, grid=grid, files=files, share=share, changed=changed)
    drawn["pairs"] = image_grid(both, folder / "like_pairs.png", ncol=shown)
    return drawn


def describe_samples(drawn: dict) -> str:
    """One line on what sample_run wrote."""
    if "pairs" in drawn:
        return (
            f"{len(drawn['images'])} variations of {len(drawn['files'])} slice(s) by the "
            f"{drawn['kind']} prior, {drawn['share']:.0%} of codes redrawn "
            f"({drawn['changed']:.1%} changed), in {drawn['seconds']:.2f}s -> "
            f"{drawn['out']}/variation_*.png, grid {drawn['grid']}, slices above variations "
            f"{drawn['pairs']}"
        )
    tuned = ", tuned decoder" if drawn["decoder"] == "tuned" else ""
    return (
        f"{len(drawn['images'])} {drawn['kind']} samples in {drawn['seconds']:.2f}s "
        f"({drawn['samples_per_second']:.1f}/s{tuned}) -> {drawn['out']}/sample_*.png, "
        f"grid {drawn['grid']}"
    )


def write_samples(images: np.ndarray, folder: Path, prefix: str = "sample") -> Path:
    """Each image as an 8-bit PNG plus grid.png, in folder; returns the grid's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        atomic_write_bytes(folder / f"{prefix}_{i:04d}.png", png_bytes(img))
    return image_grid(images[:64], folder / "grid.png")


def png_bytes(image: np.ndarray) -> bytes:
    """A 2-D image in [0, 1] as 8-bit grayscale PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def image_grid(images: np.ndarray, path: Path, ncol: int = 8) -> Path:
    """Images (N, H, W) in [0, 1] tiled into one grayscale PNG with 2-pixel gaps."""
    n, h, w = images.shape
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    grid = np.zeros((nrow * (h + 2) + 2, ncol * (w + 2) + 2), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        grid[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = img
    atomic_write_bytes(path, png_bytes(grid))
    return path
