"""Draw new slices: prior -> code maps -> VQ-VAE decoder (or the decoder tuned to that prior),
with PNG and grid output; at chosen axial levels, or as whole stacks written as NIfTI volumes
(a level-conditioned prior, brainvq.priors.base), or with chosen covariates (a prior trained
with prior.conditions; docs/conditions.md)."""

from __future__ import annotations

import io
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brainvq.codes import encode_images
from brainvq.data import read_named_slices
from brainvq.data.anatomy import ANATOMY, anatomy
from brainvq.data.volumes import write_volume
from brainvq.errors import RunError
from brainvq.io import atomic_write_bytes
from brainvq.priors import load_prior, pick_kind
from brainvq.priors.base import STACK_HIDE_BELOW
from brainvq.priors.covariates import encode, outside_range, parse_conditions
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
    batch_size: int = 8,
    temperature: float | None = None,
    top_k: int | None = None,
    progress: bool = False,
    levels=None,
    covariates: dict | None = None,
    guidance: float = 1.0,
) -> dict:
    """n samples: code maps (n, h, w) int64, images (n, S, S) float in [0, 1], samples/second,
    the seed, the temperature / top_k used (by default those in the prior's own config), which decoder
    made the images: "tuned" where the run holds a decoder tuned to this prior
    (brainvq.training.decoder), else "vqvae". The decoder takes ``batch_size`` maps at a time:
    on a CPU, 8 decoded twice as fast per slice as 64 (the activations of a few maps stay in the
    caches, and fresh memory for large ones costs page faults); the images are the same up to
    float rounding (2e-7 on one thread, bit-equal on two). "levels" (n,): each sample's relative
    level, ``levels`` (one for all, or (n,)) or, for a level-conditioned prior given none, drawn
    as in its training data; NaN for a prior without levels. ``covariates``, ``guidance``: the
    covariates asked for and the guidance scale (Prior.sample).
    """
    lv = prior.draw_levels(n, seed) if levels is None else torch.as_tensor(levels).float()
    lv = lv.expand(n).clone() if lv.numel() == 1 else lv
    given = lv if prior.level_conditioned or levels is not None else None

    def draw(t, k):
        cond = {} if given is None else {"levels": given}  # the dcgan takes no level
        if covariates:
            cond |= {"covariates": covariates, "guidance": guidance}
        return prior.sample(n, seed=seed, temperature=t, top_k=k, progress=progress, **cond)

    out = _drawn(run, prior, draw, n, batch_size, temperature, top_k)
    out["levels"], out["seed"] = lv.numpy(), seed
    return out


@torch.no_grad()
def sample_volumes(
    run: Run,
    prior,
    volumes: int,
    slices: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    temperature: float | None = None,
    top_k: int | None = None,
    progress: bool = False,
    hide_below: float = STACK_HIDE_BELOW,
) -> dict:
    """Whole stacks from a prior conditioned on levels and the slice below (Prior.sample_stack,
    ``hide_below`` of each map below hidden): the sample_images dict with codes (V, S, h, w),
    images (V, S, H, W) and levels (S,)."""
    found = {}

    def draw(t, k):
        codes, found["levels"] = prior.sample_stack(
            volumes, slices, seed, t, k, progress=progress, hide_below=hide_below
        )
        found["shape"] = codes.shape[:2]
        return codes.flatten(0, 1)

    out = _drawn(run, prior, draw, volumes, batch_size, temperature, top_k)
    v, s = found["shape"]
    out["codes"] = out["codes"].view(v, s, *out["codes"].shape[1:])
    out["images"] = out["images"].reshape(v, s, *out["images"].shape[1:])
    out["levels"] = found["levels"]
    return out


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
    level: float | None = None,
    volumes: int = 0,
    slices: int | None = None,
    condition: list[str] | None = None,
    guidance: float = 1.0,
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
        level: draw every slice at this relative axial level (0 = the lowest kept slice, 1 = the
            highest; a level-conditioned prior); by default levels are drawn as in training.
        volumes, slices: instead of n slices, ``volumes`` whole stacks of ``slices`` slices
            (default: as many as the training brains have), each written as
            volume_NNN.nii.gz, volume_NNN_montage.png and volume_NNN_sagittal.png.
        condition: ["NAME=VALUE", ...]: draw slices with these covariates (a prior trained with
            prior.conditions; the others unknown), e.g. ["cdr=1", "ventricle_fraction=0.06"].
        guidance: with ``condition``, the classifier-free guidance scale (1 = the conditioned
            prior as trained, 0 = unconditioned, > 1 follows the conditions more strongly).

    Returns the sample_images / vary_images / sample_volumes dict plus "kind", "out", "grid"
    and, with ``like``, "files", "pairs" (each slice above its variation) and "changed" (share
    of codes changed); with ``volumes``, "volumes", "montages" and "reslices" (paths); with
    ``condition``, "conditions" (asked, {name: value text}), "guidance" and "measured" ({name:
    (n,)}: the anatomy covariates asked for, measured on each sample, brainvq.data.anatomy)."""
    asked = _check_request(n, like, redraw, level, volumes, slices, condition, guidance)
    run = load_run(run_path)
    kind = pick_kind(run, kind)
    prior = load_prior(run, kind)
    folder = Path(out) if out else run.dir.path / "samples"
    if volumes:
        drawn = sample_volumes(run, prior, volumes, slices, seed, 64, temperature, top_k, progress)
        drawn.update(kind=kind, out=folder, **write_volumes(drawn["images"], folder))
        return drawn
    if like:
        share = 0.5 if redraw is None else redraw
        drawn = _vary_files(run, prior, like, n, share, seed, temperature, top_k, progress, folder)
        drawn.update(kind=kind)
        return drawn
    if asked:  # checked against the prior's conditions before any drawing
        encode(prior.covariates, asked, 1, prior.source)
        for line in outside_range(prior.covariates, asked):
            warnings.warn(line, stacklevel=2)
    drawn = sample_images(
        run, prior, n, seed, 64, temperature, top_k, progress, level, asked, guidance
    )
    drawn.update(kind=kind, out=folder, grid=write_samples(drawn["images"], folder))
    if asked:
        measured = anatomy(drawn["images"]) if set(asked) & set(ANATOMY) else {}
        drawn["measured"] = {k: v for k, v in measured.items() if k in asked}
        drawn.update(conditions=asked, guidance=guidance)
    return drawn


def _check_request(
    n: int,
    like: list[str] | None,
    redraw: float | None,
    level: float | None,
    volumes: int,
    slices: int | None,
    condition: list[str] | None,
    guidance: float,
) -> dict:
    """RunError (one line naming the option) on a request sample_run cannot serve; the
    covariates asked for ({name: value text}, parsed from ``condition``)."""
    if n < 1:
        raise RunError(f"-n {n}: ask for at least one sample")
    if redraw is not None and not like:
        raise RunError("--redraw: only with --like IMAGE... (the slices to draw variations of)")
    if sum(bool(x) for x in (like, volumes, level is not None)) > 1:
        raise RunError("--like, --volumes and --level: give one of them")
    if slices is not None and not volumes:
        raise RunError("--slices: only with --volumes N (the stacks to draw)")
    if volumes < 0 or (slices is not None and slices < 2):
        raise RunError(f"--volumes {volumes} --slices {slices}: ask for >= 1 stacks of >= 2 slices")
    asked = parse_conditions(condition)
    if asked and (like or volumes):
        raise RunError("--condition: for slices drawn anew, not with --like or --volumes")
    if guidance != 1 and not asked:
        raise RunError("--guidance: only with --condition NAME=VALUE (what to follow)")
    if not guidance >= 0:
        raise RunError(f"--guidance {guidance:g}: must be >= 0 (1 = as trained, 0 = unconditioned)")
    if level is not None and not 0 <= level <= 1:
        raise RunError(f"--level {level:g}: must be in [0, 1] (0 = lowest kept slice, 1 = highest)")
    return asked


def _vary_files(run, prior, like, n, share, seed, temperature, top_k, progress, folder) -> dict:
    """Variations of the slices ``like`` names (vary_images), written to folder with a grid and
    the pairs figure (each slice above its variation)."""
    files, images = read_named_slices(like, run.config.data.image_size)
    codes = torch.from_numpy(encode_images(run, images, run.config.eval.batch_size))
    drawn = vary_images(run, prior, codes, n, share, seed, 64, temperature, top_k, progress)
    grid = write_samples(drawn["images"], folder, prefix="variation")
    shown = min(8, n)
    originals = images[drawn["anchor"][:shown]] / 255.0
    both = np.concatenate([originals, drawn["images"][:shown]])
    changed = (drawn["codes"] != codes[drawn["anchor"]]).float().mean().item()
    drawn.update(out=folder, grid=grid, files=files, share=share, changed=changed)
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
    if "volumes" in drawn:
        v, s = drawn["images"].shape[:2]
        return (
            f"{v} volumes of {s} slices by the {drawn['kind']} prior in {drawn['seconds']:.1f}s"
            f"{tuned} -> {drawn['out']}/volume_*.nii.gz (1 mm spacing assumed), "
            "volume_*_montage.png, volume_*_sagittal.png"
        )
    lv = np.asarray(drawn.get("levels", [np.nan]))
    if not np.isnan(lv).all():
        same = np.ptp(lv) == 0
        tuned += f", level {lv[0]:.2f}" if same else ", levels as in training"
    if drawn.get("conditions"):
        tuned += ", " + ", ".join(f"{k}={v}" for k, v in drawn["conditions"].items())
        tuned += f" (guidance {drawn['guidance']:g})" if drawn["guidance"] != 1 else ""
        tuned += "".join(
            f"; measured {k} {np.mean(v):.3g} +- {np.std(v):.2g}"
            for k, v in drawn.get("measured", {}).items()
        )
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


def sagittal(stack: np.ndarray, stretch: int = 1, column: int | None = None) -> np.ndarray:
    """The reslice of a stack (S, H, W) (lowest slice first, anterior up) through one image
    column (default the middle): (S * stretch, H), the highest slice at the top, anterior at
    the left; each slice's row repeated ``stretch`` times."""
    col = stack.shape[2] // 2 if column is None else column
    return np.repeat(stack[::-1, :, col], stretch, axis=0)


def write_volumes(stacks: np.ndarray, folder: Path, spacing: float = 1.0) -> dict:
    """Stacks (V, S, H, W) in [0, 1] as volume_NNN.nii.gz (brainvq.data.volumes.write_volume),
    a montage of its slices (volume_NNN_montage.png, lowest first) and a mid-sagittal reslice
    (volume_NNN_sagittal.png: coherent stacks show smooth anatomy from bottom to top; rows
    stretched so that the picture is about half as tall as wide); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict = {"volumes": [], "montages": [], "reslices": []}
    for i, stack in enumerate(stacks):
        name = folder / f"volume_{i:03d}"
        out["volumes"].append(write_volume(f"{name}.nii.gz", stack, spacing))
        out["montages"].append(image_grid(stack, Path(f"{name}_montage.png")))
        stretch = max(1, round(stack.shape[1] / 2 / len(stack)))
        reslice = sagittal(stack, stretch)
        atomic_write_bytes(f"{name}_sagittal.png", png_bytes(reslice))
        out["reslices"].append(Path(f"{name}_sagittal.png"))
    return out


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
