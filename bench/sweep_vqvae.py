"""Tune the VQ-VAE defaults for a fixed CPU budget, fast, by replaying it on any device.

Step 1 (on the target CPU): `python bench/sweep_vqvae.py measure` times a training step of each
candidate and writes how many images each would see in the budget to bench/sweep_budget.json.
Step 2 (anywhere, e.g. a GPU): `python bench/sweep_vqvae.py train DATA.npz` trains each candidate on
exactly that many images (fp32) and prints its test SSIM and codebook usage.
DATA.npz holds uint8 arrays train/validate/test (N, S, S).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from brainvq.config import Config
from brainvq.metrics import codebook_stats, ssim
from brainvq.nn.vqvae import VQVAE, recon_loss

BUDGET_S = 12.5 * 60  # training seconds in a 15-minute run, leaving room for data and validation
OUT = Path(__file__).parent / "results" / "sweep_budget_cpu.json"

CANDIDATES = {
    "h128_b32_lr1e-3": dict(hidden=128, res_hidden=64, batch=32, lr=1e-3),
    "h64_b16_lr1e-3": dict(hidden=64, res_hidden=32, batch=16, lr=1e-3),
    "h64_b16_lr2e-3_cos": dict(hidden=64, res_hidden=32, batch=16, lr=2e-3, cosine=True),
    "h64_b16_lr1e-3_cos": dict(hidden=64, res_hidden=32, batch=16, lr=1e-3, cosine=True),
    "h64_b8_lr1e-3_cos": dict(hidden=64, res_hidden=32, batch=8, lr=1e-3, cosine=True),
    "h96_b16_lr1e-3_cos": dict(hidden=96, res_hidden=48, batch=16, lr=1e-3, cosine=True),
    "h64_b16_cos_ssim0": dict(hidden=64, res_hidden=32, batch=16, lr=1e-3, cosine=True, ssim_w=0.0),
    "h64_b16_cos_ssim0.5": dict(
        hidden=64, res_hidden=32, batch=16, lr=1e-3, cosine=True, ssim_w=0.5
    ),
    "h64_b16_cos_D32": dict(hidden=64, res_hidden=32, batch=16, lr=1e-3, cosine=True, code_dim=32),
    "h64_b16_cos_res4": dict(hidden=64, res_hidden=32, batch=16, lr=1e-3, cosine=True, n_res=4),
    "h64_b16_cos_kmeans": dict(
        hidden=64, res_hidden=32, batch=16, lr=1e-3, cosine=True, kmeans=True
    ),
    "h64_b16_cos_noema": dict(hidden=64, res_hidden=32, batch=16, lr=1e-3, cosine=True, ema=False),
    "h64_b16_cos_f8": dict(hidden=64, res_hidden=32, batch=16, lr=1e-3, cosine=True, down=8),
}


def build(c: dict, size: int = 128) -> tuple[VQVAE, Config]:
    cfg = Config()
    cfg.data.image_size = size
    v = cfg.vqvae
    v.hidden, v.res_hidden = c["hidden"], c["res_hidden"]
    v.code_dim = c.get("code_dim", 64)
    v.n_res_blocks = c.get("n_res", 2)
    v.kmeans_init = c.get("kmeans", False)
    v.ema = c.get("ema", True)
    v.downsample = c.get("down", 4)
    return VQVAE(v), cfg


def step_fn(model, opt, x, ssim_w):
    out = model(x)
    loss = recon_loss(out.recon, x) + out.vq_loss
    if ssim_w > 0:
        loss = loss + ssim_w * (1 - ssim(out.recon, x).mean())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def measure() -> None:
    torch.manual_seed(0)
    budget = {}
    for name, c in CANDIDATES.items():
        model, _ = build(c)
        opt = torch.optim.Adam(model.parameters(), lr=c["lr"])
        x = torch.rand(c["batch"], 1, 128, 128)
        step_fn(model, opt, x, c.get("ssim_w", 0.1))
        t = time.perf_counter()
        n = 4
        for _ in range(n):
            step_fn(model, opt, x, c.get("ssim_w", 0.1))
        per_img = (time.perf_counter() - t) / (n * c["batch"])
        budget[name] = int(BUDGET_S / per_img)
        print(f"{name}: {per_img * 1000:.1f} ms/img -> {budget[name]} images", flush=True)
    OUT.write_text(json.dumps(budget, indent=1))


@torch.no_grad()
def test_scores(model, test, device):
    model.eval()
    s, codes = [], []
    for i in range(0, len(test), 64):
        x = torch.from_numpy(test[i : i + 64]).float().div(255)[:, None].to(device)
        c = model.encode(x)
        s.append(ssim(model.decode(c), x).cpu())
        codes.append(c.cpu())
    model.train()
    st = codebook_stats(torch.cat(codes), model.cfg.codebook_size)
    return float(torch.cat(s).mean()), st["codebook_usage"]


def train(data_path: str, only: list[str]) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    z = np.load(data_path)
    train_set, test = z["train"], z["test"]
    budget = json.loads(OUT.read_text())
    for name, c in CANDIDATES.items():
        if only and name not in only:
            continue
        torch.manual_seed(0)
        model, _ = build(c)
        model.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=c["lr"])
        b = c["batch"]
        steps = budget[name] // b
        sched = None
        if c.get("cosine"):
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s, n=steps: 0.5 * (1 + math.cos(math.pi * min(s / n, 1.0)))
            )
        rng = np.random.default_rng(0)
        t = time.time()
        curve = []
        for s in range(steps):
            idx = np.sort(rng.choice(len(train_set), b, replace=False))
            x = torch.from_numpy(train_set[idx]).float().div(255)[:, None].to(device)
            step_fn(model, opt, x, c.get("ssim_w", 0.1))
            if sched:
                sched.step()
            if (s + 1) % max(steps // 4, 1) == 0:
                curve.append(round(test_scores(model, test, device)[0], 4))
        ssim_v, usage = test_scores(model, test, device)
        print(
            f"{name}: steps={steps} images={steps * b} test_ssim={ssim_v:.4f} usage={usage:.3f} "
            f"curve={curve} ({time.time() - t:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    if sys.argv[1] == "measure":
        measure()
    else:
        train(sys.argv[2], sys.argv[3:])
