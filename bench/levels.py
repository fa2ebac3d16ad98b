"""Benchmark: are samples asked for at a level recognised as that level, realistic per level band,
and are generated stacks coherent?

Usage: python bench/levels.py --run RUN [--data ../shared/data/brain-mri-128] [--kind maskgit]
           [--n-per-band 64] [--volumes 8] [--slices 0] [--vary-share 0.5] [--vary-volumes -1]
           [--classifier-steps 600]
           [--temperature T] [--candidates 0] [--figures bench/results/levels]

RUN holds a prior conditioned on the level and the slice below (`brainvq train-prior` on data
named with slice_Z). On the development data (24/2/4 brains, 32 slices each, slice 0 lowest):

1. A level classifier (brainvq.evaluation.levels: 4 bands of the relative level, plus a level
   head) trained on the real training slices; its band accuracy on the real test slices (4 new
   brains) is the reference; the Spearman correlation of its predicted level with the place of
   each slice in each real test brain, and the adjacent-slice SSIM of those brains (and of their
   VQ-VAE reconstructions: the coherence a perfect prior could reach through this decoder).
2. n samples per band, asked for at levels spread evenly across the band (seed 0; decoded with
   the tuned decoder where the run has one): the classifier's band accuracy on them, its ratio to
   the real accuracy, and per band (brainvq.evaluation.levels.band_scores, NN-SSIM against the
   whole training split unless --candidates): realism ratio against the real test slices of that
   band, diversity beside theirs, copies (NN-SSIM above that of every real test slice of the
   band).
3. Stacks: --volumes stacks drawn slice by slice, each slice given its level and the map of the
   slice below (Prior.sample_stack), and as a comparison the same number drawn by the "vary"
   chain (slice 0 drawn at level 0, each next slice the previous map with --vary-share of its
   codes hidden and redrawn at the next level, no map below; --vary-volumes 0 leaves it out):
   adjacent-slice SSIM beside the real stacks', Spearman of the predicted level along each
   stack, band accuracy on their slices.
5. Each of the issue's targets, met or not, computed from the numbers above.
4. Figures in --figures: montages and mid-sagittal reslices of generated stacks beside real test
   brains.
Appends the tables, with the machine and the commands, to bench/results/levels.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    DEFAULT_DATA,
    append_result,
    command,
    data_missing,
    markdown_table,
    result_block,
)

from brainvq.codes import encode_images
from brainvq.data import load_data
from brainvq.data.levels import level_band
from brainvq.evaluation.levels import (
    adjacent_ssim,
    band_accuracy,
    band_scores,
    fit_level_classifier,
    predict_levels,
    real_stacks,
    stack_spearman,
)
from brainvq.priors import load_prior
from brainvq.priors.base import STACK_HIDE_BELOW
from brainvq.priors.tuned_decoder import tuned_vqvae
from brainvq.runs import load_run
from brainvq.sampling import image_grid, png_bytes, sagittal, sample_images, sample_volumes

RESULTS = Path(__file__).parent / "results" / "levels.md"
BANDS = 4


def vary_chain(run, prior, volumes, levels, share, seed, temperature, top_k) -> np.ndarray:
    """Stacks (V, S, H, W) by the vary chain: slice 0 drawn at levels[0], each next one the map
    below with ``share`` of its codes redrawn at the next level (no map below given)."""
    vq = tuned_vqvae(run, prior.kind) or run.vqvae
    gen_seed = seed
    maps = [prior.sample(volumes, seed, temperature, top_k, levels=float(levels[0]))]
    for lv in levels[1:]:
        gen_seed += 1
        maps.append(prior.vary(maps[-1], share, gen_seed, temperature, top_k, levels=float(lv)))
    codes = torch.stack(maps, 1)
    images = vq.decode(codes.flatten(0, 1), 64)[:, 0].numpy()
    return images.reshape(volumes, len(levels), *images.shape[1:])


def stack_row(name, stacks, model, levels) -> tuple:
    """One row of the stack table."""
    adj = adjacent_ssim(stacks)
    rho = stack_spearman(model, stacks)
    flat = np.concatenate(list(stacks))
    acc = band_accuracy(model, flat, np.tile(levels, len(stacks)))
    return (
        name,
        len(stacks),
        f"{adj.mean():.3f} +- {adj.std():.3f}",
        f"{np.median(rho):.3f} (min {rho.min():.3f})",
        f"{(rho >= 0.9).mean():.0%}",
        f"{acc:.3f}",
    )


def montage_pair(generated: np.ndarray, real: np.ndarray, path: Path) -> Path:
    """A generated stack's montage above a real one's (8 columns each)."""
    s = min(len(generated), len(real))
    pick = np.round(np.linspace(0, len(real) - 1, s)).astype(int)
    return image_grid(np.concatenate([generated[:s], real[pick]]), path, ncol=8)


def reslice_row(stacks: list[np.ndarray], path: Path, gap: int = 4) -> Path:
    """Mid-sagittal reslices of stacks side by side (each slice's row stretched x2)."""
    pics = [sagittal(s, 2) for s in stacks]
    h = max(p.shape[0] for p in pics)
    row = np.zeros((h, sum(p.shape[1] + gap for p in pics)), np.float32)
    x = 0
    for p in pics:
        row[h - p.shape[0] :, x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    path.write_bytes(png_bytes(row))
    return path


def targets(real_acc, sample_acc, per_band, real, gen, model, levels) -> list[str]:
    """The issue's targets, each 'met' or 'NOT met' with the numbers it was judged on."""

    def say(ok: bool, what: str) -> str:
        return f"{'met' if ok else 'NOT met'}: {what}"

    adj_real, adj_gen = adjacent_ssim(real).mean(), adjacent_ssim(gen).mean()
    rho = stack_spearman(model, gen)
    out = [
        say(real_acc >= 0.8, f"classifier on real test slices {real_acc:.3f} >= 0.80"),
        say(
            sample_acc >= 0.9 * real_acc,
            f"on samples {sample_acc:.3f} >= 90% of real ({0.9 * real_acc:.3f})",
        ),
        say(
            abs(adj_gen - adj_real) <= 0.05,
            f"adjacent SSIM of generated stacks {adj_gen:.3f} within 0.05 of real {adj_real:.3f}",
        ),
        say(bool((rho >= 0.9).all()), f"Spearman >= 0.9 along every stack (min {rho.min():.3f})"),
    ]
    for b in per_band:
        if "realism_ratio" not in b:
            out.append(f"NOT met: band {b['band']}: no real test slices to score against")
            continue
        ratio, div, real_div = b["realism_ratio"], b["diversity_samples"], b["diversity_real_test"]
        ok = (
            b["n_samples"] >= 50
            and 0.9 <= ratio <= 1.1
            and abs(div - real_div) <= 0.05
            and b["copies"] == 0
        )
        out.append(
            say(
                ok,
                f"band {b['band']}: {b['n_samples']} samples (>= 50), realism {ratio:.3f} in "
                f"[0.9, 1.1], diversity {div:.3f} within 0.05 of {real_div:.3f}, "
                f"{b['copies']} copies",
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="run with a level-conditioned prior")
    ap.add_argument("--data", default=DEFAULT_DATA, help=f"data folder ({DEFAULT_DATA})")
    ap.add_argument("--kind", default="maskgit")
    ap.add_argument("--n-per-band", type=int, default=64)
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--slices", type=int, default=0, help="0: as the training brains")
    ap.add_argument("--vary-share", type=float, default=0.5)
    ap.add_argument("--hide-below", type=float, default=STACK_HIDE_BELOW)
    ap.add_argument("--vary-volumes", type=int, default=-1, help="-1: --volumes; 0: no vary chain")
    ap.add_argument("--classifier-steps", type=int, default=600)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--candidates", type=int, default=0, help="NN-SSIM shortlist (0: all)")
    ap.add_argument("--figures", default=str(Path(__file__).parent / "results" / "levels"))
    ap.add_argument("--note", default="", help="a line on budgets and load for the results")
    args = ap.parse_args()
    if data_missing(args.data):
        return
    t0 = time.time()
    run = load_run(args.run)
    prior = load_prior(run, args.kind)
    splits, arrays = load_data(args.data, run.config.data, progress=False)
    rel = splits.relative_levels()
    train, test = np.asarray(arrays["train"]), np.asarray(arrays["test"])
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)

    # 1. the classifier and the real references
    model = fit_level_classifier(train, rel["train"], BANDS, args.classifier_steps, seed=0)
    real_acc = band_accuracy(model, test, rel["test"])
    real = real_stacks(test, splits.subjects["test"], splits.levels["test"])
    real_levels = np.linspace(0, 1, len(real[0]))
    recon = []
    for s in real:
        codes = torch.from_numpy(encode_images(run, s))
        recon.append(run.vqvae.decode(codes, 64)[:, 0].numpy())
    real01 = [s / 255.0 for s in real]
    print(f"classifier: real test band accuracy {real_acc:.3f} ({time.time() - t0:.0f}s)")

    # 2. samples per band
    n = args.n_per_band
    levels = np.concatenate([(b + (np.arange(n) + 0.5) / n) / BANDS for b in range(BANDS)])
    drawn = sample_images(
        run, prior, len(levels), 0, 64, args.temperature, args.top_k, False, levels
    )
    samples = drawn["images"]
    pred_band = predict_levels(model, samples)[0]
    want = level_band(levels, BANDS)
    acc_b = [float((pred_band[want == b] == b).mean()) for b in range(BANDS)]
    sample_acc = float((pred_band == want).mean())
    per_band = band_scores(samples, levels, train, test, rel["test"], BANDS, args.candidates)
    print(f"samples: band accuracy {sample_acc:.3f} ({time.time() - t0:.0f}s)")

    # 3. stacks
    slices = args.slices or None
    stacks = sample_volumes(
        run, prior, args.volumes, slices, 0, 64, args.temperature, args.top_k, False,
        args.hide_below,
    )  # fmt: skip
    gen = list(stacks["images"])
    stack_levels = stacks["levels"]
    n_vary = args.volumes if args.vary_volumes < 0 else args.vary_volumes
    chain = []
    if n_vary:
        chain = list(
            vary_chain(
                run, prior, n_vary, stack_levels, args.vary_share, 0, stacks["temperature"],
                stacks["top_k"],
            )
        )  # fmt: skip
    print(f"stacks drawn ({time.time() - t0:.0f}s)")

    # 4. figures
    for i in range(min(2, len(gen))):
        montage_pair(gen[i], real01[i], figures / f"montage_generated_{i}_over_real_{i}.png")
    reslice_row(gen[:4], figures / "sagittal_generated.png")
    if chain:
        reslice_row(chain[:4], figures / "sagittal_vary_chain.png")
    reslice_row(real01, figures / "sagittal_real_test.png")
    reslice_row(recon, figures / "sagittal_real_test_reconstructed.png")

    # results
    temperature, top_k, decoder = drawn["temperature"], drawn["top_k"], drawn["decoder"]
    info = run.dir.path / f"prior-{args.kind}.safetensors"
    cmd = command()
    text = (
        f"\nRun: {args.run} ({args.kind} prior conditioned on {', '.join(prior.conditions)}; "
        f"{info.name}), data {args.data}; temperature {temperature}, top-k {top_k}, {decoder} "
        f"decoder. {args.note}\nCommand: `{cmd}` ({time.time() - t0:.0f} s)\n"
        f"\n**Level recognition.** Classifier band accuracy on real test slices {real_acc:.3f}; "
        f"on {len(levels)} samples asked for at levels spread over each band {sample_acc:.3f} "
        f"(per band {', '.join(f'{a:.2f}' for a in acc_b)}): {sample_acc / real_acc:.0%} of the "
        "real accuracy (target: real >= 80%, samples >= 90% of it).\n"
    )
    band_rows = []
    for b in per_band:
        if "realism_ratio" not in b:
            continue
        band_rows.append(
            (
                f"{b['band']} ({b['band'] / BANDS:.2f}-{(b['band'] + 1) / BANDS:.2f})",
                b["n_samples"],
                b["n_real"],
                f"{b['nn_ssim_mean']:.3f}",
                f"{b['real_test_nn_ssim_mean']:.3f}",
                f"{b['realism_ratio']:.3f}",
                f"{b['diversity_samples']:.3f} ({b['diversity_real_test']:.3f})",
                b["copies"],
                f"{acc_b[b['band']]:.2f}",
            )
        )
    band_cols = [
        "band",
        "samples",
        "real test",
        "NN-SSIM",
        "real NN-SSIM",
        "realism ratio",
        "diversity (real)",
        "copies",
        "recognised",
    ]
    real_rows = [
        stack_row("real test brains", real01, model, real_levels),
        stack_row("their VQ-VAE reconstructions", recon, model, real_levels),
        stack_row(
            f"generated: slice below, {args.hide_below:.0%} of it hidden ({len(stack_levels)} "
            "slices)",
            gen,
            model,
            stack_levels,
        ),  # fmt: skip
    ]
    if chain:
        name = f"generated: vary chain, share {args.vary_share}"
        real_rows.append(stack_row(name, chain, model, stack_levels))
    stack_cols = [
        "stacks",
        "n",
        "adjacent SSIM",
        "Spearman (median)",
        "stacks >= 0.9",
        "band accuracy",
    ]
    text += (
        "\n**Per band** (NN-SSIM against the whole training split; realism and copies against "
        "the real test slices of the band; targets: realism in [0.9, 1.1], diversity within "
        "0.05 of real, 0 copies):\n\n"
        + markdown_table(band_cols, band_rows)
        + "\n**Stacks** (targets: adjacent SSIM within 0.05 of real, Spearman >= 0.9 for each "
        "stack):"
    )
    verdicts = targets(real_acc, sample_acc, per_band, real01, gen, model, stack_levels)
    text_after = "\n**Targets** (issue 22):\n\n" + "".join(f"- {v}\n" for v in verdicts)
    block = result_block("Levels and stacks", text, stack_cols, real_rows) + text_after
    append_result(RESULTS, "Level-conditioned sampling and stacks", block)
    summary = {
        "real_band_accuracy": real_acc,
        "sample_band_accuracy": sample_acc,
        "bands": per_band,
        "stacks": real_rows,
        "targets": verdicts,
    }
    (figures / "last.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
