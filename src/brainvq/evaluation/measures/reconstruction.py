"""Reconstruction quality of the VQ-VAE on the test split: SSIM (skimage's definition) and PSNR of
each slice's reconstruction; `n_test`, `image_size`, `ssim` and `psnr` ({mean, std, min, max,
median}) in the `vqvae` section."""

from __future__ import annotations

import numpy as np
import torch

from brainvq.evaluation.keys import PSNR, SSIM
from brainvq.evaluation.measure import Context, Measure, ReportRow, Result, Row, register
from brainvq.metrics import psnr, ssim_reference, summarize
from brainvq.progress import Progress


class Reconstruction(Measure):
    """SSIM and PSNR of the test slices' reconstructions (per slice in per_item["ssim"])."""

    name, section, order = "reconstruction", "vqvae", 10

    def compute(self, ctx: Context) -> Result:
        """Score each reconstruction (ctx.images) against its slice (ctx.real)."""
        x, recons = ctx.real.astype(np.float32) / 255.0, ctx.images
        with Progress(len(x), "scoring test reconstructions", "slice", ctx.progress) as bar:
            scores = []
            for i in range(len(x)):
                scores.append(ssim_reference(x[i], recons[i]))
                bar.update()
        scores = np.array(scores)
        p = psnr(torch.from_numpy(x)[:, None], torch.from_numpy(recons)[:, None]).numpy()
        values = {
            "n_test": len(x),
            "image_size": ctx.run.config.data.image_size,
            SSIM: summarize(scores),
            PSNR: summarize(p),
        }
        return Result(values, {"ssim": scores})

    def table_rows(self, v: dict) -> list[Row]:
        """Slices, SSIM mean +- std and min / max, PSNR."""
        if SSIM not in v:
            return []
        s, p = v[SSIM], v[PSNR]
        return [
            Row(10, "test slices", f"{v['n_test']} at {v['image_size']}x{v['image_size']}"),
            Row(11, "SSIM mean +- std", f"{s['mean']:.4f} +- {s['std']:.4f}"),
            Row(12, "SSIM min / max", f"{s['min']:.4f} / {s['max']:.4f}"),
            Row(13, "PSNR mean (dB)", f"{p['mean']:.2f}"),
        ]

    def report_rows(self, v: dict) -> list[ReportRow]:
        """Test SSIM and PSNR."""
        out = []
        if SSIM in v:
            out.append(ReportRow(
                10, "Reconstruction quality (test SSIM)", f"{v[SSIM]['mean']:.3f}", "1.000",
                "How closely the VQ-VAE redraws unseen slices from their codes (1 = identical); "
                "samples cannot look better than this",
            ))  # fmt: skip
        if PSNR in v:
            out.append(
                ReportRow(
                    11, "Reconstruction PSNR", f"{v[PSNR]['mean']:.1f} dB", "", "Higher is closer"
                )
            )
        return out


register(Reconstruction())
