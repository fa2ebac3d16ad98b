"""Benchmark: where the time of one DCGAN training step goes, for the old design and the new.

Usage: python bench/dcgan_step.py [--run runs/dcgan-x --data DATA] [--steps 5] [--reps 3] [--label NAME]
Builds the DCGAN training module (brainvq.training.dcgan.DCGANModule) over the run's VQ-VAE (or,
without --run, a randomly initialised VQ-VAE of the default config at 128 px: 32x32 maps, K=512,
D=64), once with the old defaults (design gumbel, image and code discriminators, batch 64,
g256/d64) and once with this version's defaults, in this one process. For each it times, at the
design's batch size: the generator's forward and forward+backward, its head (the last layer and
the turn into an embedded code map: Gumbel-softmax over K logits, or the snap to the nearest
code), the decoder's forward and forward+backward (what an image discriminator needs), each
discriminator's forward+backward on one batch, and whole training steps (one D and one G update,
as Lightning calls them) -> steps/s. Appends a table to bench/results/dcgan_step.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import DEFAULT_DATA, append_result, command, result_block

from brainvq.config import Config, DCGANConfig
from brainvq.nn.dcgan import embed_onehot, snap
from brainvq.nn.vqvae import VQVAE
from brainvq.training.dcgan import DCGANModule

RESULTS = Path(__file__).parent / "results" / "dcgan_step.md"
# the defaults before the CPU redesign (main 7750692), set explicitly
OLD = [
    "prior.dcgan.design=gumbel",
    "prior.dcgan.d_input=both",
    "prior.dcgan.d_augment=true",
    "prior.dcgan.minibatch_std=true",
    "prior.batch_size=64",
    "prior.dcgan.g_channels=256",
    "prior.dcgan.d_channels=64",
    "prior.dcgan.latent_dim=128",
]


def timed(fn, reps: int) -> float:
    """Median seconds of fn() over reps calls, after one warm-up call."""
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def harness(module: DCGANModule) -> None:
    """Let training_step run without a Trainer: its optimizers, backward and logging."""
    opts = module.configure_optimizers()
    module.optimizers = lambda: opts
    module.manual_backward = lambda loss: loss.backward()
    module.log = lambda *a, **k: None


def profile(cfg: Config, vq: VQVAE, real: torch.Tensor, steps: int, reps: int) -> dict:
    """Seconds of each part of a step and of whole steps for one config."""
    p = cfg.prior.dcgan
    b = cfg.prior.step_batch_size()
    codebook = vq.quantizer.embedding.detach().float()
    module = DCGANModule(cfg, codebook, real.shape[-1], decoder=vq.decoder).train()
    prior, gen = module.prior, module.prior.generator
    noise = torch.randn(b, p.latent_dim)
    batch = real[torch.randint(len(real), (b,))]
    out: dict[str, float] = {}
    with torch.no_grad():
        out["G forward"] = timed(lambda: prior(noise), reps)
        trunk = gen.net[:-1](noise.view(b, -1, 1, 1))

    def head():
        raw = gen.net[-1](trunk)
        if p.design == "gumbel":
            return embed_onehot(F.gumbel_softmax(raw, hard=True, dim=1), codebook)
        return snap(raw, codebook)[0]

    with torch.no_grad():
        out["  of which head (last layer + Gumbel/snap)"] = timed(head, reps)
    out["G forward+backward"] = timed(lambda: prior(noise)[0].square().mean().backward(), reps)
    emb = module._inputs(None, prior(noise)[0].detach())  # (disc, None, input) per D
    for disc, _, x in emb:
        name = "D image" if disc is module.disc_image else "D codes"
        x = x.detach().requires_grad_(True)
        out[f"{name} forward+backward (1 batch)"] = timed(
            lambda d=disc, x=x: d(x).sum().backward(), reps
        )
    if module.decoder is not None:
        e = emb[0][2].detach()
        with torch.no_grad():
            out["decode forward"] = timed(lambda: module.decoder(e), reps)
        e = e.requires_grad_(True)
        out["decode forward+backward"] = timed(lambda: module.decoder(e).mean().backward(), reps)
    harness(module)
    module.training_step(batch, 0)  # warm-up
    t = time.perf_counter()
    for i in range(steps):
        module.training_step(real[torch.randint(len(real), (b,))], i)
    out["whole step (D + G update)"] = (time.perf_counter() - t) / steps
    return out


def settings(cfg: Config) -> str:
    """The settings a profile ran with, one line."""
    p = cfg.prior.dcgan
    return (
        f"design {p.design}, d_input {p.d_input}, batch {cfg.prior.step_batch_size()}, "
        f"g{p.g_channels}/d{p.d_channels}, latent {p.latent_dim}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="", help="a trained run (default: a random VQ-VAE)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="the run's data (with --run)")
    ap.add_argument("--steps", type=int, default=5, help="whole steps timed per design")
    ap.add_argument("--reps", type=int, default=3, help="repeats of each part (median)")
    ap.add_argument("--only-old", action="store_true", help="profile the old design alone")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.run:
        from brainvq.codes import code_maps
        from brainvq.runs import load_run

        run = load_run(args.run)
        vq, base = run.vqvae, run.config
        real = torch.from_numpy(code_maps(run, args.data, progress=False)["train"])
        what = f"the VQ-VAE of {args.run}, its {len(real)} training code maps"
    else:
        base = Config()
        base.data.image_size = 128
        vq = VQVAE(base.vqvae)
        real = torch.randint(base.vqvae.codebook_size, (256, 32, 32))
        what = "a randomly initialised VQ-VAE of the default config (128 px), random code maps"
    vq = vq.float().eval()
    designs = {"old (main 7750692 defaults)": OLD}
    if not args.only_old:
        designs["new (this version's defaults)"] = []
    results = {}
    for name, overrides in designs.items():
        cfg = Config.from_dict(base.to_dict())
        # this version's prior defaults, not the run's config.toml's (written by an older one)
        cfg.prior.kind, cfg.prior.batch_size, cfg.prior.dcgan = "dcgan", 0, DCGANConfig()
        cfg.override(overrides)
        print(f"profiling {name}: {settings(cfg)}", flush=True)
        results[name] = (settings(cfg), profile(cfg, vq, real.long(), args.steps, args.reps))
    parts = list(dict.fromkeys(k for _, r in results.values() for k in r))
    names = list(results)
    rows = [
        [part] + [f"{results[n][1][part]:.3f}" if part in results[n][1] else "-" for n in names]
        for part in parts
    ]
    sps = [1 / results[n][1]["whole step (D + G update)"] for n in names]
    rows.append(["steps/s"] + [f"{s:.2f}" for s in sps])
    text = (
        f"\n- command: `{command()}` on {what}\n"
        + "".join(f"- {n}: {s}\n" for n, (s, _) in results.items())
        + f"- seconds, median of {args.reps} (whole step: mean of {args.steps})\n"
    )
    if len(sps) == 2:
        text += f"- steps/s ratio new/old: {sps[1] / sps[0]:.1f}x\n"
    block = result_block(args.label or "DCGAN step profile", text, ["part", *names], rows)
    append_result(RESULTS, "DCGAN step profile: where the time of one step goes", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
