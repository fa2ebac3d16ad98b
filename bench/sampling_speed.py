"""Benchmark: decoded slices per second of sampling, today's path against the new one, and the
quality of both on the same seeds.

Usage: python bench/sampling_speed.py --run runs/speed [--data ../shared/data/brain-mri-128]
           [--kinds maskgit dcgan transformer pixelcnn] [--repeats 3] [--threads 2]
           [--n-speed KIND=N ...] [--n-quality 100] [--seed-spread]
           [--maskgit-steps 8 6 4] [--maskgit-int8] [--dcgan-gumbel]

For each KIND the run holds a prior of, in one process: "old" is the path of today
(commit 76b7e96), kept below as reference functions (the MaskGIT and DCGAN sampling loops as
they were; maskgit maps drawn in batches of 100, dcgan in 64, decoding in 64); "new" is
brainvq.sampling.sample_images as it is now. Both are timed from code maps to decoded slices
(sample_images' own span: prior.sample then VQVAE.decode), alternating old/new over --repeats
rounds (each round both draw the same n maps under the round's seed); slices/s is the median
over rounds and the ratio is old time / new time, also as the lowest and highest per-round
ratio. Slices per CPU-second of the process are given beside them: on a machine shared with
other jobs they move far less than wall-clock time.
Quality: n-quality samples of seed 0 from each path, scored by
brainvq.evaluation.realism.score_samples against the run's train/test splits (realism ratio,
diversity = mean pairwise SSIM among samples); "same maps" says whether the two paths drew
identical code maps; --seed-spread also scores today's path under seed 1, the difference that
chance alone makes. --maskgit-steps adds rows for the new path with fewer parallel decoding
steps and --maskgit-int8 rows with int8 dynamically quantised Linear layers (changes of
samples, so their quality is what decides); --dcgan-gumbel a row with the DCGAN's new path
but today's Gumbel-max draw (the same maps as today; the new default draw, "cdf", draws from
the same distribution with other numbers). maskgit rows note the arithmetic per map.
Appends the tables, the machine, the load (os.getloadavg) and the command to
bench/results/sampling_speed.md.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import add_run_args, append_result, command, load_run_splits, result_block

from brainvq.evaluation.realism import reference_stats, score_samples
from brainvq.nn.dcgan import snap
from brainvq.nn.maskgit import hidden_share
from brainvq.priors import categorical_picker, load_prior, shape_logits, trained_kinds
from brainvq.sampling import _drawn, sample_images

RESULTS = Path(__file__).parent / "results" / "sampling_speed.md"
N_SPEED = {"maskgit": 32, "dcgan": 256, "transformer": 16, "pixelcnn": 16}


# --- today's path (commit 76b7e96), kept to measure against -------------------------------------


@torch.no_grad()
def old_maskgit_generate(net, n, size, pick, steps, noise, generator):
    """MaskedCodeTransformer.generate as it was (from all-hidden maps): every step one pass of
    the network over all n maps, logits of every position."""
    h, w = size
    t = h * w
    tokens = torch.full((n, t), net.mask_token, dtype=torch.long)
    n_hidden = t
    for s in range(steps):
        hidden = tokens == net.mask_token
        logits = net._logits(tokens, 0, None)[hidden]  # (n * n_hidden, K)
        drawn = pick(logits)
        conf = torch.full((n, t), math.inf)
        conf[hidden] = logits.float().log_softmax(-1).gather(1, drawn[:, None]).squeeze(1)
        tokens[hidden] = drawn
        keep = 0 if s == steps - 1 else int(math.floor(hidden_share((s + 1) / steps) * t))
        keep = max(0, min(keep, n_hidden - 1))
        if keep:
            u = torch.rand(n, t, generator=generator).clamp_(1e-9, 1 - 1e-9)
            conf = conf + noise * (1 - (s + 1) / steps) * -torch.log(-torch.log(u))
            rehide = conf.topk(keep, dim=1, largest=False).indices
            tokens.scatter_(1, rehide, net.mask_token)
        n_hidden = keep
        if not n_hidden:
            break
    return tokens.reshape(n, h, w)


@torch.no_grad()
def old_dcgan_sample(prior, n, seed, temperature, top_k, batch_size=64):
    """DCGANPrior.sample as it was: batches of 64, the Gumbel noise out of place."""
    was_training = prior.training
    prior.eval()
    noise = prior.noise(n, seed)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    out = []
    for s in range(0, n, batch_size):
        raw = prior._raw(noise[s : s + batch_size])
        if prior.design == "snap":
            _, codes = snap(raw, prior.codebook)
        else:
            u = torch.rand(raw.shape, generator=gen).clamp_(1e-9, 1 - 1e-9)
            logits = shape_logits(raw, temperature, top_k, dim=1)
            codes = (logits - torch.log(-torch.log(u))).argmax(dim=1)
        out.append(codes)
    prior.train(was_training)
    return torch.cat(out).long()


def old_sample_images(run, prior, n, seed, net=None, steps=None):
    """sample_images as it was: the old samplers above, decoding in batches of 64. ``net`` and
    ``steps``: the maskgit network and step count of today (by default the prior's own)."""
    net = getattr(prior, "net", None) if net is None else net
    steps = getattr(prior, "steps", None) if steps is None else steps

    def draw(temperature, top_k):
        if prior.kind == "dcgan":
            return old_dcgan_sample(prior, n, seed, temperature, top_k)
        if prior.kind == "maskgit":
            size = (prior.code_size, prior.code_size)

            def batch(s, b, pick, gen, done):
                return old_maskgit_generate(net, b, size, pick, steps, prior.noise, gen)

            return prior._batched(n, seed, temperature, top_k, 100, False, batch)
        return prior.sample(n, seed=seed, temperature=temperature, top_k=top_k)

    with torch.no_grad():
        return _drawn(run, prior, draw, n, 64, None, None)


# --- measuring ------------------------------------------------------------------------------------


def race(old, new, n: int, repeats: int) -> dict:
    """Alternate old and new over ``repeats`` rounds of n maps (round r: seed r, the first to
    run alternates). Wall-clock slices/s (medians) and their ratio old time / new time (also
    the lowest and highest per-round ratio); and slices per CPU-second of this process, which
    other jobs on a shared machine disturb far less than wall-clock time (with one thread it is
    the speed of one core that is not shared)."""
    old(2, 99), new(2, 99)  # warm-up
    wall = {"old": [], "new": []}
    cpu = {"old": [], "new": []}
    for r in range(repeats):
        pair = [("old", old), ("new", new)]
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            c0 = time.process_time()
            wall[name].append(fn(n, r)["seconds"])  # sample_images' span: sampling + decoding
            cpu[name].append(time.process_time() - c0)
    ratios = [a / b for a, b in zip(wall["old"], wall["new"], strict=True)]
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "old": n / med["old"],
        "new": n / med["new"],
        "ratio": med["old"] / med["new"],
        "lo": min(ratios),
        "hi": max(ratios),
        "old_cpu": n / med_cpu["old"],
        "new_cpu": n / med_cpu["new"],
    }


def int8_linear(net):
    """A copy of net with its Linear layers int8 dynamically quantised (torch.ao, deprecated in
    torch 2.13 and not in the library: measured here only, as a change of samples)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(net), {torch.nn.Linear}, dtype=torch.qint8
        )


def hidden_counts(steps: int, t: int) -> list[int]:
    """Codes hidden at the start of each MaskGIT step, from all-hidden maps (generate's
    schedule)."""
    counts, n_hidden = [], t
    for s in range(steps):
        counts.append(n_hidden)
        keep = 0 if s == steps - 1 else int(math.floor(hidden_share((s + 1) / steps) * t))
        n_hidden = max(0, min(keep, n_hidden - 1))
        if not n_hidden:
            break
    return counts


def maskgit_gflop(net, steps: int, new: bool) -> float:
    """Arithmetic of one MaskGIT map (GFLOP, 2 per multiply-add; matrix products and attention
    only). Old: every step a full pass with logits everywhere. New: the first step shared by
    all maps (counted as nothing), and the last block and head only at the hidden codes."""
    t, d, k = net.length, net.pos.shape[-1], net.codebook_size
    attn = net.blocks[0].attn
    kv = 2 * attn.kv_heads * attn.head_dim

    def layer(q_rows: int) -> int:  # multiply-adds of one block with q_rows query rows
        qkv = t * d * (d + kv)  # queries everywhere too: one Linear
        return qkv + 2 * q_rows * t * d + q_rows * d * d + 2 * q_rows * d * 4 * d

    macs = 0
    for s, h in enumerate(hidden_counts(steps, t)):
        if not new:
            macs += len(net.blocks) * layer(t) + t * d * k
        elif s > 0:
            macs += (len(net.blocks) - 1) * layer(t) + layer(h) + h * d * k
    return 2 * macs / 1e9


def step_cpu_ms(prior, n: int = 4) -> list[float]:
    """CPU milliseconds per map of each step of the new MaskGIT path (one chunk of n maps),
    timed at generate's progress callback."""
    marks = [time.process_time()]
    gen = torch.Generator().manual_seed(0)
    pick = categorical_picker(*getattr(prior, "sampling", (1.0, 0)), gen)
    size = (prior.code_size, prior.code_size)
    prior.net.generate(
        n, size, pick, prior.steps, prior.noise, gen, lambda k: marks.append(time.process_time())
    )
    return [1e3 * (b - a) / n for a, b in zip(marks, marks[1:], strict=False)]


def sgemm_gflops_per_cpu_s() -> float:
    """A 1024^3 float32 matrix product's GFLOP per CPU-second of this process, best of 10: what
    the machine's matrix kernels reach here."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    best = math.inf
    for _ in range(10):
        c0 = time.process_time()
        a @ b
        best = min(best, time.process_time() - c0)
    return 2 * 1024**3 / max(best, 1e-9) / 1e9


def quality(drawn: dict, train, test, ref) -> dict:
    """Realism ratio and diversity of drawn["images"]."""
    s, _ = score_samples(drawn["images"], train, test, reference=ref)
    return {"realism": s["realism_ratio"], "diversity": s["diversity_samples"]}


def load_line() -> str:
    return "load average {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--kinds", nargs="+", default=["maskgit", "dcgan", "transformer", "pixelcnn"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--n-speed", nargs="*", default=[], help="KIND=N maps per timed round")
    ap.add_argument("--n-quality", type=int, default=100)
    ap.add_argument("--maskgit-steps", type=int, nargs="*", default=[])
    ap.add_argument(
        "--seed-spread", action="store_true", help="also score today's path under seed 1"
    )
    ap.add_argument(
        "--dcgan-gumbel",
        action="store_true",
        help="add a row with DCGANPrior.sample(draw='gumbel'), today's draw",
    )
    ap.add_argument(
        "--maskgit-int8", action="store_true", help="add rows with int8 dynamic Linear layers"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_speed = dict(N_SPEED, **{k: int(v) for k, v in (a.split("=") for a in args.n_speed)})
    loaded = load_run_splits(args)
    if loaded is None:
        return
    run, arrays = loaded
    train, test = np.asarray(arrays["train"]), np.asarray(arrays["test"])
    ref = reference_stats(train, test)
    loads = [load_line()]
    rows, notes = [], []
    for kind in [k for k in args.kinds if k in trained_kinds(run.dir)]:
        prior = load_prior(run, kind)
        variants = [("new", None, False, None)]  # (label, maskgit steps, int8 Linear, dcgan draw)
        if kind == "maskgit":
            variants += [(f"new, {s} steps", s, False, None) for s in args.maskgit_steps]
            if args.maskgit_int8:
                variants += [("new, int8 Linear", None, True, None)]
                variants += [
                    (f"new, {s} steps, int8 Linear", s, True, None) for s in args.maskgit_steps
                ]
        if kind == "dcgan" and args.dcgan_gumbel:
            variants += [("new, draw gumbel", None, False, "gumbel")]
        default_steps = getattr(prior, "steps", None)
        float_net = getattr(prior, "net", None)

        def old(n, seed, prior=prior, net=float_net, steps=default_steps):
            return old_sample_images(run, prior, n, seed, net, steps)  # whatever a row changes

        q_old = old(args.n_quality, 0)
        quality_old = quality(q_old, train, test, ref)
        if args.seed_spread:  # how far today's path moves from seed 0 to seed 1 by chance alone
            other = quality(old(args.n_quality, 1), train, test, ref)
            notes.append(
                f"{kind}, today's path, seed 0 against seed 1 ({args.n_quality} samples each): "
                f"realism {quality_old['realism']:.4f} / {other['realism']:.4f}, diversity "
                f"{quality_old['diversity']:.4f} / {other['diversity']:.4f}"
            )
        for label, steps, int8, draw in variants:
            if steps is not None:
                prior.steps = steps
            if int8:
                prior.net = int8_linear(float_net)
            if draw is not None:  # sample_images calls prior.sample: this instance's, for now
                prior.sample = functools.partial(type(prior).sample, prior, draw=draw)

            def new(n, seed, prior=prior):
                return sample_images(run, prior, n, seed)

            speed = race(old, new, n_speed[kind], args.repeats)
            q_new = new(args.n_quality, 0)
            same = torch.equal(q_old["codes"], q_new["codes"])
            if same and np.array_equal(q_old["images"], q_new["images"]):
                quality_new, same_text = quality_old, "yes (same images)"
            else:
                quality_new = quality(q_new, train, test, ref)
                share = (q_old["codes"] == q_new["codes"]).float().mean().item()
                same_text = "yes" if same else f"no ({share:.1%} of codes equal)"
            if kind == "maskgit":
                old_gf = maskgit_gflop(float_net, default_steps, new=False)
                new_gf = maskgit_gflop(float_net, prior.steps, new=True)
                notes.append(
                    f"maskgit ({label}): {old_gf:.1f} GFLOP per map old ({default_steps} steps), "
                    f"{new_gf:.1f} new ({prior.steps} steps); per CPU-second old "
                    f"{old_gf * speed['old_cpu']:.0f} GFLOP, new {new_gf * speed['new_cpu']:.0f} "
                    f"(decoding included in the time, not in the count); 10 maps/s would need "
                    f"{10 * new_gf:.0f} GFLOP/s; CPU ms per map of each step: "
                    + ", ".join(f"{ms:.0f}" for ms in step_cpu_ms(prior))
                )
            prior.steps, prior.net = default_steps, float_net
            prior.__dict__.pop("sample", None)
            rows.append(
                (
                    f"{kind} ({label})",
                    n_speed[kind],
                    f"{speed['old']:.2f}",
                    f"{speed['new']:.2f}",
                    f"{speed['ratio']:.2f} ({speed['lo']:.2f}-{speed['hi']:.2f})",
                    f"{speed['old_cpu']:.2f} / {speed['new_cpu']:.2f}",
                    f"{quality_old['realism']:.4f} / {quality_new['realism']:.4f}",
                    f"{quality_old['diversity']:.4f} / {quality_new['diversity']:.4f}",
                    same_text,
                )
            )
            print(" | ".join(map(str, rows[-1])), "|", load_line(), flush=True)
            loads.append(load_line())
    notes.append(f"a 1024^3 float32 matrix product: {sgemm_gflops_per_cpu_s():.0f} GFLOP/CPU-s")
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY",) if k in os.environ)
    text = (
        f"\nRun {args.run} (data {args.data}); {args.repeats} alternating rounds per row; "
        f"quality: {args.n_quality} samples of seed 0, each path. Load before and after each "
        f"row: {'; '.join(loads)}.{' Environment: ' + env if env else ''}\n\n"
        + "".join(f"- {line}\n" for line in notes)
        + f"\n`{command()}`"
    )
    columns = [
        "prior (path)",
        "maps per round",
        "old slices/s",
        "new slices/s",
        "ratio (rounds' range)",
        "slices per CPU-s old / new",
        "realism old / new",
        "diversity old / new",
        "same maps",
    ]
    block = result_block("Sampling speed, today's path against the new one", text, columns, rows)
    append_result(RESULTS, "Decoded slices per second: today's path and the new one", block)


if __name__ == "__main__":
    main()
