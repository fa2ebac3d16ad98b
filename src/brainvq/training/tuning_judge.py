"""Whether a tuned decoder does what it exists for: the prior's samples closer to real slices.

Decoder tuning (brainvq.training.decoder) is kept only when, on the validation split (never the
test split: this is a choice, and the test split is kept for the final score):

- the prior's samples decoded by the tuned decoder are harder to tell from the real validation
  slices than the same samples decoded by the VQ-VAE's decoder: the classifier two-sample test
  (brainvq.evaluation.c2st; 2x2-averaged, folds by brain; lower is better) must fall;
- its reconstructions of the real validation maps are at most ``MAX_SSIM_DROP`` SSIM worse;
- the samples stay as varied (tune.max_diversity_rise; brainvq.training.decoder).

A validation split too small for the two-sample test (under 10 slices, or one brain) is judged
on the other two alone, and the result says why.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from brainvq.errors import DataError
from brainvq.evaluation.c2st import MIN_PER_SIDE, c2st
from brainvq.metrics import ssim_reference
from brainvq.nn.vqvae import VQVAE

MAX_SSIM_DROP = 0.005  # validation reconstruction SSIM the tuned decoder may lose
JUDGE_POOL = 2  # the C2ST compares 2x2-averaged images (see brainvq.evaluation.c2st)
MAX_JUDGE_SAMPLES = 256  # samples drawn for the C2ST (as many as validation slices, at most this)


@torch.no_grad()
def recon_ssim(
    vq: VQVAE,
    maps: torch.Tensor,
    images: np.ndarray,
    batch_size: int = 64,
    done: Callable[[int], None] | None = None,
) -> float:
    """Mean skimage SSIM of the decoded maps against the images (N, H, W) in [0, 1]; ``done(1)``
    after each image."""
    recons = vq.decode(maps, batch_size)[:, 0].numpy()
    scores = []
    for i in range(len(images)):
        scores.append(ssim_reference(images[i], recons[i]))
        if done is not None:
            done(1)
    return float(np.mean(scores))


def sample_c2st(
    prior,
    decoders: list[VQVAE],
    real: np.ndarray,
    groups: list | None,
    folds: int,
    seed: int,
) -> list[float] | str:
    """C2ST accuracy (pool 2) of the same prior samples decoded by each decoder against the real
    slices ``real`` (N, H, W) in [0, 1], folds by ``groups`` (a brain per slice); or why it
    could not be run."""
    brains = len(set(groups)) if groups else 0
    if len(real) < MIN_PER_SIDE or brains == 1:
        why = f"{len(real)} slices" if len(real) < MIN_PER_SIDE else "one brain"
        return f"the validation split has {why}: too few for a two-sample test"
    n = min(len(real), MAX_JUDGE_SAMPLES)
    temperature, top_k = prior.sampling
    with torch.no_grad():  # the C2ST's classifier trains: only drawing and decoding go without
        codes = prior.sample(n, seed=seed, temperature=temperature, top_k=top_k)
        fakes = [vq.decode(codes)[:, 0].clamp(0, 1).numpy() for vq in decoders]
    out = []
    for fake in fakes:
        try:
            r = c2st(real, fake, pool=JUDGE_POOL, folds=folds, seed=seed, real_groups=groups)
        except DataError as e:  # too small an image or too few groups for the folds
            return str(e)
        out.append(r["accuracy"])
    return out


def judge_decoders(
    prior, vqvae: VQVAE, tuned: VQVAE, split: dict, folds: int, seed: int, progress=None
) -> dict:
    """Validation SSIM of both decoders and the C2ST of the prior's samples through each.

    split: {"images": (N, H, W) in [0, 1], "maps": (N, h, w), "groups": a brain per slice or
    None}. Returns val_ssim_vqvae, val_ssim_tuned, and c2st_vqvae, c2st_tuned (accuracy) or
    c2st_skipped (why)."""
    images, maps = split["images"], split["maps"]
    out = {
        "val_ssim_vqvae": recon_ssim(vqvae, maps, images, done=progress),
        "val_ssim_tuned": recon_ssim(tuned, maps, images, done=progress),
    }
    scores = sample_c2st(prior, [vqvae, tuned], images, split["groups"], folds, seed)
    if isinstance(scores, str):
        out["c2st_skipped"] = scores
    else:
        out["c2st_vqvae"], out["c2st_tuned"] = scores
    return out


def verdict(judged: dict, alike: tuple[float, float], max_rise: float) -> tuple[bool, str]:
    """(kept, why not in words or ""), from judge_decoders' result and the samples' mean pairwise
    SSIM through (the VQ-VAE's decoder, the tuned one)."""
    faults = []
    if "c2st_tuned" in judged and not judged["c2st_tuned"] < judged["c2st_vqvae"]:
        faults.append(
            f"its samples are no harder to tell from the real validation slices (C2ST "
            f"{judged['c2st_tuned']:.3f} vs {judged['c2st_vqvae']:.3f} with the VQ-VAE's decoder)"
        )
    drop = judged["val_ssim_vqvae"] - judged["val_ssim_tuned"]
    if drop > MAX_SSIM_DROP:
        faults.append(
            f"its validation reconstructions lose {drop:.4f} SSIM (at most {MAX_SSIM_DROP})"
        )
    if alike[1] - alike[0] > max_rise:
        faults.append(
            f"it makes the samples more alike (mean pairwise SSIM {alike[1]:.3f} vs "
            f"{alike[0]:.3f}, tune.max_diversity_rise = {max_rise:g})"
        )
    return not faults, "; ".join(faults)
