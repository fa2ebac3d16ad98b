"""fp32 against bf16 autocast, per stage and preset, on this CPU; what `precision auto` chooses.

    /work/heavy.sh bench/results/heavy.log \\
        env PYTHONPATH=src python bench/precision.py [--data ../shared/data/brain-mri-128]

For each stage's own model at its own batch size (the VQ-VAE of the default config at 128 px and of
the quick preset, each prior kind at its default size over the default 32x32 code maps, and
decoder tuning at 128 px), times training steps (forward, backward, optimizer step; warm-up steps
excluded; the fastest of the timed steps) in fp32 and in bf16 autocast with
brainvq.training.precision.time_steps, and asks choose_precision what `auto` takes (the cache in
a fresh folder: it measures). Then trains a tiny VQ-VAE twice in fp32 and twice in bf16 with the
same seed and checks the weights are identical. Writes bench/results/precision.md (keeping its
hand-written "## Reading" section).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from brainvq.config import Config
from brainvq.data import load_splits
from brainvq.nn.vqvae import VQVAE
from brainvq.training.code_prior import CodePredictionModule
from brainvq.training.dcgan import DCGANModule
from brainvq.training.decoder import DecoderTuningModule
from brainvq.training.hardware import cpu_has_bf16
from brainvq.training.precision import MARGIN, choose_precision, time_steps
from brainvq.training.vqvae import VQVAEModule, train_vqvae

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "src" / "brainvq" / "configs" / "quick.toml"
STEPS, WARMUP = 4, 2


def slices(data: str | None, n: int) -> torch.Tensor:
    """n real 128 px training slices (B, 1, 128, 128) in [0, 1], or synthetic ones."""
    if data and Path(data).exists():
        cfg = Config()
        cfg.data.image_size = 128
        x = np.asarray(load_splits(data, cfg.data, progress=False)["train"][:n], dtype=np.float32)
        return torch.from_numpy(x / 255.0)[:, None]
    return torch.rand(n, 1, 128, 128, generator=torch.Generator().manual_seed(0))


def cases(data: str | None) -> list[tuple[str, object, object, int]]:
    """(name, module, batch, updates per step) of every stage timed."""
    default, quick = Config(), Config.load(str(QUICK))
    default.data.image_size = 128
    out = []
    for name, cfg in (("VQ-VAE, default (128 px, 32x32 codes)", default),):
        out.append((name, VQVAEModule(cfg), slices(data, cfg.train.batch_size), 1))
    name = "VQ-VAE, quick preset (128 px, 16x16 codes)"
    out.append((name, VQVAEModule(quick), slices(data, quick.train.batch_size), 1))
    v = default.vqvae
    codebook = torch.randn(v.codebook_size, v.code_dim)
    side = 128 // v.downsample
    gen = torch.Generator().manual_seed(0)
    for kind in ("maskgit", "transformer", "pixelcnn", "dcgan"):
        cfg = Config()
        cfg.prior.kind = kind
        bs = cfg.prior.step_batch_size()
        codes = torch.randint(0, v.codebook_size, (bs, side, side), generator=gen)
        if kind == "dcgan":
            module = DCGANModule(cfg, codebook, side, decoder=VQVAE(v).decoder)
            out.append((f"prior {kind} (batch {bs})", module, [codes], 2))
        else:
            module = CodePredictionModule(cfg, codebook, side)
            out.append((f"prior {kind} (batch {bs})", module, [codes], 1))
    t = default.tune
    codes = torch.randint(0, v.codebook_size, (t.batch_size, side, side), generator=gen)
    module = DecoderTuningModule(VQVAE(v), t.lr, default.train.ssim_loss_weight)
    out.append(
        (f"decoder tuning (batch {t.batch_size})", module, (codes, slices(data, t.batch_size)), 1)
    )
    return out


def equal_runs(tmp: Path, precision: str) -> bool:
    """Two tiny VQ-VAE trainings with one seed and precision: identical weights?"""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import tiny_config, write_slices

    root = tmp / "data"
    if not root.exists():
        for split, n, seed in (("train", 24, 1), ("validate", 4, 2), ("test", 6, 3)):
            write_slices(root / f"keras_png_slices_{split}", n, 32, seed=seed)
    weights = []
    for i in range(2):
        cfg = tiny_config(max_epochs=3, precision=precision)
        run = tmp / f"{precision}-{i}"
        train_vqvae(str(root), str(run), cfg, progress=False)
        weights.append(load_file(str(run / "vqvae.safetensors")))
    a, b = weights
    return all(torch.equal(a[k], b[k]) for k in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the dev data beside the checkout (../shared), or beside the worktrees' parent
    near = [r / "shared" / "data" / "brain-mri-128" for r in (ROOT.parent, ROOT.parents[1])]
    ap.add_argument("--data", default=str(next((d for d in near if d.exists()), near[0])))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "precision.md"))
    args = ap.parse_args()
    start, load0 = time.time(), os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BRAINVQ_CACHE"] = tmp  # auto measures afresh, the user's cache untouched
        for name, module, batch, updates in cases(args.data):
            secs = {}

            def timer(p, module=module, batch=batch, updates=updates, secs=secs):
                secs[p] = time_steps(module, batch, p, STEPS, WARMUP, updates)
                return secs[p]

            choice = choose_precision("auto", "cpu", f"bench|{name}", timer)
            if not secs:  # no BF16: auto did not time; time both for the table
                timer("32-true"), timer("bf16-mixed")
            row = (name, 1 / secs["32-true"], 1 / secs["bf16-mixed"], choice)
            print(f"{name}: {row[1]:.2f} vs {row[2]:.2f} steps/s -> {choice.precision}", flush=True)
            rows.append(row)
        same = {p: equal_runs(Path(tmp), p) for p in ("32", "bf16")}
    load1 = os.getloadavg()
    write(args.out, rows, same, time.time() - start, load0, load1, args.data)


def write(path, rows, same, seconds, load0, load1, data) -> None:
    """The markdown table."""
    cpu = platform.processor() or "x86_64"
    lines = [
        "# fp32 against bf16 autocast per stage, and what `precision auto` chooses",
        "",
        f"`bench/precision.py` on a {os.cpu_count()}-core Intel Xeon with AVX512-BF16 and AMX "
        f"({cpu}; BF16 seen: {cpu_has_bf16()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{seconds:.0f} s; load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end "
        "(run under /work/heavy.sh: no other heavy job). Steps/s: the fastest of "
        f"{STEPS} timed training steps after {WARMUP} warm-up steps (forward, backward, optimizer "
        f"step), batches of {'the dev data' if Path(data).exists() else 'synthetic slices'}; "
        "priors over random 32x32 code maps of K=512 (speed does not depend on the codes), "
        f"unconditioned. `auto` takes bf16 where it is at least {MARGIN}x faster.",
        "",
        "| stage's model | fp32 steps/s | bf16 steps/s | bf16 / fp32 | `auto` chose |",
        "|---|---:|---:|---:|---|",
    ]
    for name, f32, b16, choice in rows:
        chose = "bf16-mixed" if choice.precision == "bf16-mixed" else "fp32"
        lines.append(f"| {name} | {f32:.2f} | {b16:.2f} | {b16 / f32:.2f}x | {chose} |")
    lines += [
        "",
        "Seed for seed: a tiny VQ-VAE (32 px, 3 epochs) trained twice with one seed gives "
        f"identical weights in fp32: {same['32']}; in bf16 autocast: {same['bf16']}.",
        "",
    ]
    old = Path(path).read_text() if Path(path).exists() else ""
    kept = old[old.index("## Reading") :] if "## Reading" in old else ""  # written by hand
    Path(path).write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
