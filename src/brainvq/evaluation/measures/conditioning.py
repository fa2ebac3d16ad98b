"""Conditioning fidelity (brainvq.evaluation.conditioning) of a prior trained with
prior.conditions: whether its samples have the brain and ventricle fractions asked for, and
whether a classifier trained on real brains labels them with the table covariates asked for.
A prior without conditions adds nothing."""

from __future__ import annotations

from brainvq.evaluation.conditioning import conditioning_fidelity
from brainvq.evaluation.measure import Context, Measure, ReportRow, Result, Row, register

KEY = "conditioning"


class Conditioning(Measure):
    """Asked vs measured anatomy, and classes asked vs labelled, over samples drawn at a spread
    of asked values (eval.condition_*)."""

    name, section, order = KEY, "samples", 70

    def compute(self, ctx: Context) -> Result:
        """The section, for a conditioned prior (none otherwise)."""
        got = conditioning_fidelity(ctx.run, ctx.prior, ctx.root, ctx.ev, ctx.progress)
        return Result({KEY: got} if got else {})

    def table_rows(self, v: dict) -> list[Row]:
        """One row per covariate: r and MAE, or the share labelled as asked."""
        rows = []
        for name, c in ((v.get(KEY) or {}).get("covariates") or {}).items():
            if c["measure"] == "anatomy":
                what = f"r {c['r']:.3f}, MAE {c['mae']:.4f} ({c['samples']} samples, "
                rows.append(
                    Row(80, f"{name} asked vs measured", what + f"{len(c['values'])} values)")
                )
            else:
                what = f"{c['sample_accuracy']:.0%} of {c['samples']} samples labelled as asked"
                what += f" (real test slices {c['test_accuracy']:.0%}; ratio {c['ratio']:.2f})"
                rows.append(Row(80, f"{name} classes ({', '.join(c['classes'])})", what))
        return rows

    def report_rows(self, v: dict) -> list[ReportRow]:
        """One row per covariate: how closely samples follow what was asked."""
        rows = []
        for name, c in ((v.get(KEY) or {}).get("covariates") or {}).items():
            if c["measure"] == "anatomy":
                what = (
                    f"Pearson r of the {name} asked against that measured on each sample, over "
                    f"{c['samples']} samples at {len(c['values'])} values (1 = always as asked)"
                )
                rows.append(
                    ReportRow(100, f"Follows the {name} asked", f"{c['r']:.2f}", "1.00", what)
                )
            else:
                what = (
                    "Share of samples asked for each class that a classifier trained on real "
                    "training brains labels as asked, beside its accuracy on real test slices"
                )
                v_, r = f"{c['sample_accuracy']:.0%}", f"{c['test_accuracy']:.0%}"
                rows.append(ReportRow(100, f"Follows the {name} asked", v_, r, what))
        return rows


register(Conditioning())
