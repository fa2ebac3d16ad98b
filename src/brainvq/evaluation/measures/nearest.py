"""The nearest-neighbour measures of a prior's samples (brainvq.evaluation.realism, definitions in
docs/measures.md): NN-SSIM and the realism ratio, diversity (mean pairwise SSIM), copies of
training slices, the share in the real range and code use. One nearest-neighbour search of the
samples (and one, cached, of the real slices) gives them all, so they are one measure; its
per-sample arrays (nn_ssim, nearest, real_nn_ssim, real_nearest) feed the figures and the
manifest."""

from __future__ import annotations

from brainvq.evaluation.keys import (
    COPIES,
    COPY_THRESHOLD,
    DIVERSITY_REAL,
    DIVERSITY_SAMPLES,
    N_SAMPLES,
    REALISM_RATIO,
)
from brainvq.evaluation.manifest import reference_cache
from brainvq.evaluation.measure import (
    Context,
    Measure,
    ReportRow,
    Result,
    Row,
    keyed_rows,
    register,
)
from brainvq.evaluation.realism import score_samples

REPORT_ROWS = [
    (
        10, "Look like brains (realism ratio)", REALISM_RATIO, lambda v, s: f"{v:.2f}", "1.00",
        "How close samples come to the training brains, over how close new real slices come: "
        "1 = as close as real brains; well under 1 = implausible; well over = copying",
    ),
    (
        20, "Likeness to the nearest training slice (NN-SSIM)", "nn_ssim_mean",
        lambda v, s: f"{v:.2f}", "real_test_nn_ssim_mean",
        "SSIM with the most similar training slice, averaged (1 = identical)",
    ),
    (
        30, "Variety (mean pairwise SSIM)", DIVERSITY_SAMPLES, lambda v, s: f"{v:.2f}",
        DIVERSITY_REAL,
        "How alike the slices are to one another: lower is more varied; near the real value "
        "is right",
    ),
    (
        40, "Copies of training slices", COPIES, lambda v, s: f"{v} of {s.get(N_SAMPLES)}", "0",
        "Samples closer to a training slice than any real test slice comes",
    ),
    (
        50, "Within the real range", "share_in_real_range", lambda v, s: f"{v:.0%}", "100%",
        "Samples at least as close to a training slice as the least close real slice",
    ),
    (
        60, "Code use unlike real maps", "code_hist_distance", lambda v, s: f"{v:.2f}", "0",
        "How differently samples use the codebook from real slices' code maps (0 = the same "
        "frequencies, 1 = no code in common)",
    ),
]  # fmt: skip


class Nearest(Measure):
    """score_samples of the samples against the training and reference slices."""

    name, section, order = "nearest", "samples", 10

    def compute(self, ctx: Context) -> Result:
        """Every nearest-neighbour measure, and the per-sample arrays."""
        scores, per = score_samples(
            ctx.images,
            ctx.train,
            ctx.real,
            ctx.codes.numpy(),
            ctx.real_codes,
            ctx.run.config.vqvae.codebook_size,
            candidates=ctx.ev.nn_candidates,
            cache_dir=reference_cache(ctx.run),
            progress=ctx.progress,
        )
        return Result(scores, per)

    def table_rows(self, s: dict) -> list[Row]:
        """NN-SSIM, realism, diversity, copies and code use."""
        if REALISM_RATIO not in s:
            return []
        real = f"real {s.get('reference', 'test')}"
        rows = [
            Row(10, "NN-SSIM mean / max", f"{s['nn_ssim_mean']:.4f} / {s['nn_ssim_max']:.4f}"),
            Row(11, "share NN-SSIM > 0.6", f"{s['share_over_0.6']:.0%}"),
            Row(12, f"{real} NN-SSIM", f"{s['real_test_nn_ssim_mean']:.4f}"),
        ]
        if "share_in_real_range" in s:
            lowest = f"{s['share_in_real_range']:.0%} (lowest {s['real_test_nn_ssim_min']:.4f})"
            rows.append(Row(13, "share >= lowest real NN-SSIM", lowest))
        diversity = f"{s[DIVERSITY_SAMPLES]:.4f} / {s[DIVERSITY_REAL]:.4f}"
        return rows + [
            Row(14, "realism ratio", f"{s[REALISM_RATIO]:.3f}"),
            Row(15, f"diversity samples/{real}", diversity),
            Row(16, "copies", f"{s[COPIES]} (threshold {s[COPY_THRESHOLD]:.4f})"),
            Row(17, "code-histogram distance", f"{s.get('code_hist_distance', float('nan')):.4f}"),
            Row(18, "distinct codes in samples", f"{s.get('sample_codes_used', 0)}"),
        ]

    def report_rows(self, s: dict) -> list[ReportRow]:
        """Realism, likeness, variety, copies, the real range and code use."""
        return keyed_rows(s, REPORT_ROWS)


register(Nearest())
