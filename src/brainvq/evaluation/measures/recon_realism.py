"""The realism ratio of the VQ-VAE's test reconstructions (brainvq.evaluation.realism): what
samples as good as real code maps would score through this decoder."""

from __future__ import annotations

from brainvq.evaluation.manifest import reference_cache
from brainvq.evaluation.measure import Context, Measure, ReportRow, Result, Row, register
from brainvq.evaluation.realism import realism_ratio

RECON_REALISM = "recon_realism_ratio"


class ReconRealism(Measure):
    """Mean NN-SSIM of the reconstructions over that of the real test slices (needs training
    slices)."""

    name, section, order = "recon_realism", "vqvae", 30

    def compute(self, ctx: Context) -> Result:
        """The ratio, or nothing without training slices."""
        if not len(ctx.train):
            return Result()
        cands, cache = ctx.ev.nn_candidates, reference_cache(ctx.run)
        ratio = realism_ratio(ctx.images, ctx.real, ctx.train, cands, cache, ctx.progress)
        return Result({RECON_REALISM: ratio})

    def table_rows(self, v: dict) -> list[Row]:
        """The ratio, with what it means."""
        if RECON_REALISM not in v:
            return []
        ratio = v[RECON_REALISM]
        return [Row(30, "realism of recons", f"{ratio:.3f} (samples as good as real code maps)")]

    def report_rows(self, v: dict) -> list[ReportRow]:
        """The ratio beside real slices' 1."""
        if RECON_REALISM not in v:
            return []
        return [ReportRow(
            30, "Realism of reconstructions", f"{v[RECON_REALISM]:.2f}", "1.00",
            "The realism ratio of test reconstructions: what samples as good as real code maps "
            "would score through this decoder",
        )]  # fmt: skip


register(ReconRealism())
