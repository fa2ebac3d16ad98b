"""Diversity by MS-SSIM (brainvq.evaluation.ms_ssim): mean pairwise MS-SSIM among a prior's samples
beside the same among the reference split's real slices, and the scales used."""

from __future__ import annotations

from brainvq.evaluation.measure import Context, Measure, ReportRow, Result, Row, register
from brainvq.evaluation.ms_ssim import mean_pairwise_ms_ssim, scales_note
from brainvq.metrics import as_images

SAMPLES, REAL, SCALES = (
    "ms_ssim_diversity_samples",
    "ms_ssim_diversity_real_test",
    "ms_ssim_scales",
)


def ms_ssim_diversity(samples, real, max_pairs: int = 2000, seed: int = 0) -> dict:
    """The metrics.json entries: mean pairwise MS-SSIM among ``samples`` and among ``real``
    slices (the reference split's), and the scales used."""
    size = min(as_images(real[:1]).shape[-2:])
    return {
        SAMPLES: mean_pairwise_ms_ssim(samples, max_pairs, seed),
        REAL: mean_pairwise_ms_ssim(real, max_pairs, seed),
        SCALES: scales_note(size),
    }


class MsSsimDiversity(Measure):
    """Mean pairwise MS-SSIM of the samples and of the real slices."""

    name, section, order = "ms_ssim_diversity", "samples", 40

    def compute(self, ctx: Context) -> Result:
        """Both means and the scales."""
        return Result(ms_ssim_diversity(ctx.images, ctx.real))

    def table_rows(self, v: dict) -> list[Row]:
        """Samples / real, and the scales."""
        if SAMPLES not in v:
            return []
        real = f"real {v.get('reference', 'test')}"
        ms = f"{v[SAMPLES]:.4f} / {v[REAL]:.4f}"
        return [Row(40, f"MS-SSIM diversity samples/{real}", f"{ms} ({v[SCALES]})")]

    def report_rows(self, v: dict) -> list[ReportRow]:
        """Variety at several scales, beside the real slices'."""
        if SAMPLES not in v:
            return []
        return [ReportRow(
            80, "Variety (mean pairwise MS-SSIM)", f"{v[SAMPLES]:.2f}", f"{v[REAL]:.2f}",
            f"As mean pairwise SSIM, at several scales ({v.get(SCALES, '')}): "
            "coarse anatomy weighs as much as texture",
        )]  # fmt: skip


register(MsSsimDiversity())
