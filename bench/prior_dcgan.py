"""Benchmark: train the DCGAN prior on a trained VQ-VAE run for a budget, then score 100 samples.

Usage: python bench/prior_dcgan.py [--run runs/dcgan-dev] [--data ../shared/data/brain-mri-128]
           [--minutes 8] [--set prior.dcgan.design=gumbel ...] [--label NAME] [--n 100]
Trains from scratch (--fresh semantics) in RUN, decodes n samples with the run's VQ-VAE, scores them
with brainvq.evaluation.realism.score_samples against the data's train/test splits, writes a sample grid
to RUN/figures/prior-dcgan-samples.png and appends a result block, with the machine, to
bench/results/prior_dcgan.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import DEFAULT_DATA, append_result, command, data_missing, result_block
from PIL import Image

from brainvq.codes import code_maps
from brainvq.config import DCGANConfig
from brainvq.data import load_splits
from brainvq.evaluation.realism import reference_stats, score_samples
from brainvq.priors import load_prior
from brainvq.runs import load_run
from brainvq.training.budget import read_finished
from brainvq.training.prior import train_prior

RESULTS = Path(__file__).parent / "results" / "prior_dcgan.md"


def grid(images: torch.Tensor, cols: int = 10) -> Image.Image:
    """(N, 1, S, S) in [0, 1] -> one uint8 grid image."""
    n, _, s, _ = images.shape
    rows = (n + cols - 1) // cols
    out = np.zeros((rows * s, cols * s), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * s : (r + 1) * s, c * s : (c + 1) * s] = (images[i, 0].numpy() * 255).round()
    return Image.fromarray(out)


def beside(samples: torch.Tensor, real) -> Image.Image:
    """16 samples (a 4x4 grid, left) beside 16 real slices (uint8, a 4x4 grid, right)."""
    left = grid(samples, cols=4)
    right = grid(torch.from_numpy(np.asarray(real)).float().div(255)[:, None], cols=4)
    out = Image.new("L", (left.width * 2 + 8, left.height), 255)
    out.paste(left, (0, 0))
    out.paste(right, (left.width + 8, 0))
    return out


def score_cached(images, train, test, codes, test_codes, k: int, cache: Path) -> dict:
    """score_samples, with the real-test side (same every run) computed once and kept in cache."""
    if cache.exists():
        ref = json.loads(cache.read_text())
    else:
        ref = reference_stats(train, test)
        cache.write_text(json.dumps(ref))
    out, _ = score_samples(images, train, test, codes, test_codes, k, reference=ref)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/dcgan-dev")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--set", action="append", default=[], help="prior.key=value override")
    ap.add_argument("--label", default="")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codes-out", default="", help="only train and save the sampled codes (.npy)")
    ap.add_argument("--score-codes", default="", help="only score codes saved by --codes-out")
    ap.add_argument("--note", default="", help="where the training ran, for the results block")
    ap.add_argument(
        "--reference",
        default="test",
        choices=["test", "validate"],
        help="the real slices scored against (validate: to choose settings)",
    )
    ap.add_argument(
        "--defaults",
        action="store_true",
        help="this version's prior.dcgan defaults, not those in the run's config.toml",
    )
    ap.add_argument("--score-only", action="store_true", help="score the run's DCGAN, no training")
    ap.add_argument("--figure", default="", help="also save 16 samples beside 16 real slices")
    args = ap.parse_args()
    if data_missing(args.data):
        return 0
    run = load_run(args.run)
    cfg = run.config
    cfg.prior.kind = "dcgan"
    if args.defaults:
        cfg.prior.dcgan, cfg.prior.batch_size = DCGANConfig(), 0
    cfg.override([f"prior.max_minutes={args.minutes}", *args.set])
    if args.score_codes:
        saved = np.load(args.score_codes, allow_pickle=False)
        codes = torch.from_numpy(saved["codes"]).long()
        summary = json.loads(str(saved["summary"]))
        wall = float(saved["wall"])
        k = cfg.vqvae.codebook_size
    else:
        t0 = time.time()
        if args.score_only:  # the run's trained DCGAN as it is
            summary = {"steps": (read_finished(run.dir, "prior-dcgan") or {}).get("steps")}
        else:
            trained = train_prior(
                args.run, cfg, "dcgan", data=args.data, fresh=True, progress=False
            )
            summary = trained.as_dict()
        wall = time.time() - t0
        prior = load_prior(run)
        codes = prior.sample(args.n, seed=args.seed)
        k = prior.codebook_size
        if args.codes_out:
            np.savez(args.codes_out, codes=codes.numpy(), summary=json.dumps(summary), wall=wall)
            print(json.dumps(summary), f"wall {wall:.0f} s", f"codes {codes.unique().numel()}")
            return 0
    images = run.vqvae.decode(codes, 50)
    arrays = load_splits(args.data, cfg.data, progress=False)
    ref = args.reference
    test_codes = code_maps(run, args.data)[ref]
    t1 = time.time()
    cache = Path(args.run) / "codes" / f"score_reference_{ref}.json"  # per run + data + split
    score = score_cached(
        images,
        arrays["train"],
        arrays[ref],
        codes.numpy(),
        test_codes,
        k,
        cache,
    )
    score_s = time.time() - t1
    fig = Path(args.run) / "figures" / "prior-dcgan-samples.png"
    fig.parent.mkdir(parents=True, exist_ok=True)
    grid(images).save(fig)
    if args.figure:
        beside(images[:16], arrays[ref][:: max(1, len(arrays[ref]) // 16)][:16]).save(args.figure)
    p = cfg.prior.dcgan
    settings = (
        f"design={p.design} loss={p.loss} spectral_norm={p.spectral_norm} r1_gamma={p.r1_gamma} "
        f"ema_decay={p.ema_decay} commit_weight={p.commit_weight} tanh_output={p.tanh_output} "
        f"batch={cfg.prior.batch_size} "
        f"g_channels={p.g_channels} d_channels={p.d_channels} latent={p.latent_dim}"
    )
    cmd = command()
    keys = (
        "nn_ssim_mean",
        "realism_ratio",
        "diversity_samples",
        "diversity_real_test",
        "diversity_gap",
        "copies",
        "code_hist_distance",
        "sample_codes_used",
        "share_over_0.6",
        "real_test_nn_ssim_mean",
    )
    row = ", ".join(
        f"{k} {score[k]:.4f}" if isinstance(score[k], float) else f"{k} {score[k]}" for k in keys
    )
    text = (
        f"\n- command: `{cmd}` (run {args.run}, VQ-VAE K={cfg.vqvae.codebook_size}, "
        f"code maps {codes.shape[1]}x{codes.shape[2]})\n"
        f"- settings: {settings}\n"
        f"- training: {args.minutes:g}-minute cap, step budget {cfg.prior.step_budget()}, {summary.get('epochs')} epochs, "
        f"{summary.get('steps')} steps (one D and one G update each), stage wall time {wall / 60:.1f} min; "
        f"scoring {score_s:.0f} s\n"
        f"- {args.n} samples (seed {args.seed}) against the {ref} split: {row}\n"
        f"- all: `{json.dumps(score)}`"
    )
    block = result_block(args.label or "DCGAN prior", text, where=args.note)
    append_result(RESULTS, "DCGAN prior over VQ-VAE code maps", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
