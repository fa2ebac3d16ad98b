"""Codebook use on the test split: codes used, their share of the codebook, the perplexity of
the code distribution, the codebook's size and the code positions the split has."""

from __future__ import annotations

from brainvq.evaluation.keys import CODEBOOK_SIZE, CODES_USED, TEST_POSITIONS
from brainvq.evaluation.measure import Context, Measure, ReportRow, Result, Row, register
from brainvq.metrics import codebook_stats


class Codebook(Measure):
    """How many codes the test slices' code maps (ctx.codes) use, and how evenly."""

    name, section, order = "codebook", "vqvae", 20

    def compute(self, ctx: Context) -> Result:
        """codebook_stats of the test code maps."""
        size = ctx.run.config.vqvae.codebook_size
        values = {**codebook_stats(ctx.codes, size), CODEBOOK_SIZE: size}
        values[TEST_POSITIONS] = int(ctx.codes.numel())  # codes the test split could use at most
        return Result(values)

    def table_rows(self, v: dict) -> list[Row]:
        """Codes used (share) and perplexity."""
        if CODES_USED not in v:
            return []
        return [
            Row(20, "codes used", f"{v[CODES_USED]} ({v['codebook_usage']:.1%})"),
            Row(21, "perplexity", f"{v['perplexity']:.1f}"),
        ]

    def report_rows(self, v: dict) -> list[ReportRow]:
        """Codes used of the codebook's size."""
        if CODES_USED not in v:
            return []
        size = v.get(CODEBOOK_SIZE, round(v[CODES_USED] / max(v["codebook_usage"], 1e-9)))
        what = "Codes the test slices use: few means a mostly dead codebook"
        return [ReportRow(20, "Codebook in use", f"{v[CODES_USED]} of {size}", "", what)]


register(Codebook())
