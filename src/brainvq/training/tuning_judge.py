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

import json
from collections.abc import Callable, Mapping

import numpy as np
import torch

from brainvq.config import TuneConfig
from brainvq.errors import DataError
from brainvq.evaluation.c2st import MIN_PER_SIDE, c2st
from brainvq.io import atomic_write_text
from brainvq.metrics import ssim_reference
from brainvq.nn.vqvae import VQVAE
from brainvq.priors.tuned_decoder import decoder_path, refusal_path
from brainvq.runs import RunDir, atomic_save_safetensors

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


def validation_split(arrays: dict, maps: dict, splits) -> dict:
    """judge_decoders' ``split`` from the run's validation slices and code maps: the brain of
    each slice where every one is known (the C2ST folds by brain), else None."""
    subjects = splits.subjects.get("validate", [])
    known = len(subjects) > 0 and all(subjects)
    return {
        "images": np.asarray(arrays["validate"], dtype=np.float32) / 255.0,
        "maps": torch.from_numpy(np.asarray(maps["validate"])).long(),
        "groups": [str(g) for g in splits.subjects["validate"]] if known else None,
    }


def keep_or_refuse(
    run: RunDir, kind: str, tuned: VQVAE, sha: str, tune: TuneConfig, judged: dict, alike
) -> dict:
    """Write the tuned decoder if it passes ``verdict`` (its samples harder to tell from the real
    validation slices, its reconstructions as good, its samples as varied: ``alike``, their mean
    pairwise SSIM through the VQ-VAE's decoder and the tuned one), else drop it and record that
    tuning to this prior (``sha``: its file's digest) was refused."""
    alike_vqvae, alike_tuned = alike
    kept, why = verdict(judged, (alike_vqvae, alike_tuned), tune.max_diversity_rise)
    if kept:
        meta = {"kind": f"decoder-{kind}", "prior_sha256": sha, "max_share": tune.max_share}
        atomic_save_safetensors(tuned.decoder.state_dict(), decoder_path(run, kind), meta)
        refusal_path(run, kind).unlink(missing_ok=True)
    else:
        record = {"prior_sha256": sha, "samples_alike_vqvae": alike_vqvae}
        record.update(samples_alike_tuned=alike_tuned, why=why, **judged)
        atomic_write_text(refusal_path(run, kind), json.dumps(record))
        decoder_path(run, kind).unlink(missing_ok=True)  # an earlier tuning to it goes too
    out = {"kept": kept, "samples_alike_vqvae": alike_vqvae, "samples_alike_tuned": alike_tuned}
    return out | {"why_not_kept": why}


def judged_text(result: Mapping) -> str:
    """What a decoder tuning was judged by on the validation split, in words."""
    ssim = (
        f"validation reconstruction SSIM {result['val_ssim_tuned']:.4f} (VQ-VAE decoder "
        f"{result['val_ssim_vqvae']:.4f})"
    )
    if "c2st_tuned" not in result:
        return f"{ssim}; not judged by a two-sample test ({result.get('c2st_skipped', '')})"
    return (
        f"{ssim}; C2ST of its samples vs real validation slices {result['c2st_tuned']:.3f} "
        f"(VQ-VAE decoder {result['c2st_vqvae']:.3f})"
    )
