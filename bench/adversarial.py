"""Benchmark: does the adversarial term (vqvae.adversarial_weight) make a settled VQ-VAE's
reconstructions harder for the two-sample test's classifier to tell from real slices, at the same
step budget and without losing SSIM?

Usage: python bench/adversarial.py [--run /work/runs/dev] [--data ../shared/data/brain-mri-128]
           [--steps 300] [--weights 0 0.8] [--disc-channels 16] [--disc-layers 3]
           [--lr 1e-4] [--disc-lr 1e-3] [--threads T] [--no-start] [--probe-disc N]

VQGAN switches its discriminator on once the autoencoder has settled; this does the same from a
trained run: RUN/vqvae.safetensors (read only) is trained on for --steps more steps on the
training split, once per --weights value, each time from the same weights, with the same seed
and the same batches (weight 0 = the image loss alone: the control). Each arm goes through the
VQ-VAE stage's own training step (VQVAEModule, float32, Adam with a fresh state at --lr: at the
stage's 1e-3 a fresh Adam's first steps undo a settled VQ-VAE; the discriminator fresh, in its
own Adam group at --disc-lr); a plain loop instead of a Lightning trainer, so nothing is
written into the run. Each arm's reconstructions of the test split are then scored: SSIM
(skimage's definition, as evaluate), PSNR, and the C2ST at full resolution and 2x2-averaged
with folds by brain (brainvq.evaluation.two_sample.c2st_scores, as `brainvq evaluate`).
Unless --no-start, the starting VQ-VAE is scored too.

--probe-disc N instead trains a fresh discriminator alone for N steps (hinge loss, Adam at
--disc-lr) on training slices against the starting VQ-VAE's reconstructions of them (the
autoencoder frozen), and reports how well it then tells the test slices from their
reconstructions: balanced accuracy of the sign of each image's mean patch logit, and the mean
logits; a check that the discriminator can see what the two-sample test sees.

Appends to bench/results/adversarial.md. Without --probe-disc, bench/results/adversarial.png shows
4 test slices (one per brain) and each arm's reconstructions of them, each beside its central
32x32 crop enlarged 4x to show the texture.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import DEFAULT_DATA, append_result, command, data_missing, result_block

from brainvq.data import load_data
from brainvq.evaluation.two_sample import c2st_scores
from brainvq.metrics import psnr, ssim_reference
from brainvq.nn.patchgan import PatchDiscriminator, hinge_d_loss
from brainvq.runs import load_run
from brainvq.training.loaders import slice_loader
from brainvq.training.vqvae import VQVAEModule

RESULTS = Path(__file__).parent / "results" / "adversarial.md"
COLUMNS = [
    "arm",
    "steps",
    "train s",
    "test SSIM",
    "PSNR dB",
    "C2ST full res",
    "C2ST 2x2",
    "per fold (2x2)",
    "D(real) / D(recon), last 20",
    "adaptive weight, last 20",
    "D(real) - D(recon), per 100 steps",
]


def train_arm(run, train: np.ndarray, weight: float, args) -> tuple[object, float, dict]:
    """The run's VQ-VAE trained on for args.steps steps with `weight` (0: no discriminator);
    returns the VQ-VAE (eval mode), the seconds, and the logged adversarial terms' last values."""
    cfg = copy.deepcopy(run.config)
    v = cfg.vqvae
    v.adversarial_weight, v.adversarial_start = weight, 0
    v.disc_channels, v.disc_layers, v.disc_lr = args.disc_channels, args.disc_layers, args.disc_lr
    cfg.train.channels_last, cfg.train.lr = False, args.lr
    torch.manual_seed(args.seed)
    module = VQVAEModule(cfg)
    module.model.load_state_dict(run.vqvae.state_dict())
    module.model.train()
    logged: dict[str, list[float]] = {}
    module.log = lambda name, value, **k: logged.setdefault(name, []).append(float(value.detach()))
    opt = module.configure_optimizers()
    batches = slice_loader(train, cfg.train.batch_size, True, 0, True, args.seed)
    step, t0 = 0, time.perf_counter()
    while step < args.steps:
        for batch in batches:
            opt.zero_grad(set_to_none=True)
            module.training_step(batch, step).backward()
            opt.step()
            step += 1
            if step % 25 == 0:
                print(f"  weight {weight}: step {step}/{args.steps}", file=sys.stderr, flush=True)
            if step == args.steps:
                break
    seconds = time.perf_counter() - t0
    last: dict = {k: float(np.mean(vals[-20:])) for k, vals in logged.items()}
    last["first_loss"] = logged["loss"][0]
    if "d_real" in logged:  # D(real) - D(recon), mean over each 100 steps: is it separating?
        gap = np.array(logged["d_real"]) - np.array(logged["d_fake"])
        last["gaps"] = [float(gap[i : i + 100].mean()) for i in range(0, len(gap), 100)]
    return module.model.float().eval(), seconds, last


def probe_disc(run, train, test, args) -> list[str]:
    """A fresh discriminator trained alone against the frozen VQ-VAE's reconstructions; its
    held-out (test) balanced accuracy, mean logits, and seconds."""
    torch.manual_seed(args.seed)
    disc = PatchDiscriminator(args.disc_channels, args.disc_layers)
    opt = torch.optim.Adam(disc.parameters(), lr=args.disc_lr, betas=(0.5, 0.9))
    vq = run.vqvae.eval()
    batches = slice_loader(train, run.config.train.batch_size, True, 0, True, args.seed)
    step, t0 = 0, time.perf_counter()
    while step < args.probe_disc:
        for batch in batches:
            with torch.no_grad():
                recon = vq(batch).recon.float().clamp(0, 1)
            d_real, d_fake = disc(torch.cat([batch, recon])).chunk(2)
            loss = hinge_d_loss(d_real, d_fake)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0:
                print(f"  probe step {step}: d_loss {float(loss):.3f}", file=sys.stderr, flush=True)
            if step == args.probe_disc:
                break
    seconds = time.perf_counter() - t0
    disc.eval()
    with torch.no_grad():
        x = torch.from_numpy(test.astype(np.float32) / 255.0)[:, None]
        r = torch.cat([vq(x[i : i + 32]).recon for i in range(0, len(x), 32)]).float().clamp(0, 1)
        real = disc(x).mean(dim=(1, 2, 3))
        fake = disc(r).mean(dim=(1, 2, 3))
    acc = 0.5 * (float((real > 0).float().mean()) + float((fake < 0).float().mean()))
    return [
        f"{args.disc_channels} ch, {args.disc_layers} layers",
        str(args.probe_disc),
        f"{seconds:.0f}",
        f"{acc:.2f}",
        f"{float(real.mean()):+.3f} / {float(fake.mean()):+.3f}",
        f"{float(loss):.3f}",
    ]


def crops(images: np.ndarray, picks: list[int]) -> np.ndarray:
    """One strip: each picked image (S, S) in [0, 1], then its central 32x32 crop enlarged 4x."""
    tiles = []
    for i in picks:
        im = images[i]
        c = im.shape[0] // 2
        crop = im[c - 16 : c + 16, c - 16 : c + 16].repeat(4, 0).repeat(4, 1)
        tiles += [im, crop]
    return np.concatenate(tiles, axis=1)


def save_grid(strips: list[np.ndarray], path: Path) -> None:
    """Strips stacked top to bottom, 2 px of white between, as an 8-bit PNG."""
    from PIL import Image

    gap = np.ones((2, strips[0].shape[1]))
    rows = [x for s in strips for x in (s, gap)][:-1]
    Image.fromarray((np.concatenate(rows) * 255).round().astype(np.uint8)).save(path)


def score(vqvae, test: np.ndarray, splits, ev) -> dict:
    """SSIM, PSNR and the C2ST of `vqvae`'s reconstructions of the test slices."""
    with torch.no_grad():
        x = torch.from_numpy(test.astype(np.float32) / 255.0)[:, None]
        recons = torch.cat([vqvae(x[i : i + 32]).recon for i in range(0, len(x), 32)])
    recons = recons.float().clamp(0, 1)
    ssims = [ssim_reference(x[i, 0].numpy(), recons[i, 0].numpy()) for i in range(len(x))]
    out = {"ssim": float(np.mean(ssims)), "psnr": float(psnr(x, recons).mean())}
    out["c2st"] = c2st_scores(test, recons[:, 0].numpy(), splits, ev, paired=True)
    out["recons"] = recons[:, 0].numpy()
    return out


def row(name: str, steps: int, seconds: float | None, s: dict, last: dict) -> list[str]:
    c = s["c2st"]
    d = (
        f"{last['d_real']:+.2f} / {last['d_fake']:+.2f}"
        if "d_real" in last
        else "-"  # no discriminator in this arm
    )
    return [
        name,
        str(steps),
        "-" if seconds is None else f"{seconds:.0f}",
        f"{s['ssim']:.4f}",
        f"{s['psnr']:.2f}",
        f"{c['pool1']:.2f} +- {c['pool1_std']:.2f}",
        f"{c['pool2']:.2f} +- {c['pool2_std']:.2f}",
        " ".join(f"{a:.2f}" for a in c["pool2_folds"]),
        d,
        f"{last['adv_weight']:.3f}" if "adv_weight" in last else "-",
        " ".join(f"{g:+.2f}" for g in last.get("gaps", [])) or "-",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="/work/runs/dev", help="a trained run (read only)")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.8])
    ap.add_argument("--disc-channels", type=int, default=16)
    ap.add_argument("--disc-layers", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam's (both groups; fresh moments)")
    ap.add_argument("--disc-lr", type=float, default=1e-3, help="the discriminator's (train.lr)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-start", action="store_true", help="do not score the starting VQ-VAE")
    ap.add_argument("--grid", default=str(RESULTS.with_suffix(".png")), help="the PNG to write")
    ap.add_argument("--probe-disc", type=int, default=0, help="train a discriminator alone")
    args = ap.parse_args()
    if data_missing(args.data):
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_run(args.run)
    splits, arrays = load_data(args.data, run.config.data, progress=False)
    train, test = np.asarray(arrays["train"]), np.asarray(arrays["test"])
    ev = run.config.eval
    if args.probe_disc:
        r = probe_disc(run, train, test, args)
        text = (
            f"\nA fresh discriminator (Adam lr {args.disc_lr}, betas 0.5/0.9, batch "
            f"{run.config.train.batch_size} real + their reconstructions) trained alone against "
            f"{args.run}/vqvae.safetensors (frozen), then scored on the {len(test)} test slices and "
            "their reconstructions: balanced accuracy of the sign of each image's mean patch logit "
            f"(0.5 = it cannot tell). Load average at the end: {os.getloadavg()[0]:.1f}.\n"
            f"`{command()}`\n"
        )
        cols = ["discriminator", "steps", "s", "test accuracy", "D(real) / D(recon)", "last d_loss"]
        block = result_block("Can the discriminator see it? (trained alone)", text, cols, [r])
        append_result(RESULTS, "Adversarial VQ-VAE training against the two-sample test", block)
        return
    subjects = list(splits.subjects["test"])
    picks = [subjects.index(b) + subjects.count(b) // 2 for b in sorted(set(subjects))][:4]
    strips = [crops(test.astype(np.float32) / 255.0, picks)]
    rows, names = [], ["real test slices"]
    if not args.no_start:
        s = score(run.vqvae, test, splits, ev)
        rows.append(row("start (the run's VQ-VAE)", 0, None, s, {}))
        strips.append(crops(s["recons"], picks))
        names.append(rows[-1][0])
        print(rows[-1], file=sys.stderr, flush=True)
    for w in args.weights:
        vqvae, seconds, last = train_arm(run, train, w, args)
        name = "image loss alone" if w == 0 else f"adversarial_weight {w}"
        s = score(vqvae, test, splits, ev)
        rows.append(row(name, args.steps, seconds, s, last))
        strips.append(crops(s["recons"], picks))
        names.append(name)
        print(rows[-1], file=sys.stderr, flush=True)
    save_grid(strips, Path(args.grid))
    load = os.getloadavg()[0]
    text = (
        f"\nData: {args.data} (train {len(train)} slices, test {len(test)} of "
        f"{len(set(splits.subjects.get('test', [])))} brains); from {args.run}/vqvae.safetensors; "
        f"discriminator {args.disc_channels} channels, {args.disc_layers} layers, Adam lr "
        f"{args.disc_lr}; batch "
        f"{run.config.train.batch_size}, Adam lr {args.lr} (fresh moments), float32, seed {args.seed}. "
        f"C2ST: {ev.c2st_folds} folds requested, by brain; 0.5 = indistinguishable. Load average "
        f"at the end: {load:.1f} on {os.cpu_count()} cores (shared: seconds are inflated).\n"
        f"`{command()}`\n\n{Path(args.grid).name}, top to bottom: {', '.join(names)}.\n"
    )
    block = result_block("Adversarial fine-tuning of a settled VQ-VAE", text, COLUMNS, rows)
    append_result(RESULTS, "Adversarial VQ-VAE training against the two-sample test", block)


if __name__ == "__main__":
    main()
