"""The prior's two-sample test (brainvq.evaluation.prior_test): a classifier against the decoder's
reconstructions of real brains, beside its reference (two sets of real brains); the
`prior_c2st` and `prior_c2st_reference` entries of each prior's samples, on with eval.c2st."""

from __future__ import annotations

from brainvq.evaluation import prior_close as close
from brainvq.evaluation.keys import PRIOR_C2ST, PRIOR_C2ST_REFERENCE
from brainvq.evaluation.measure import Context, Measure, ReportRow, Result, Row, register
from brainvq.evaluation.prior_test import PRIOR_POOLS, prior_two_sample


def prior_test_rows(s: dict) -> list[tuple[str, str]]:
    """Table rows of a samples section's prior test: accuracy +- spread beside its reference at
    each pool, or why it was skipped ([] where it did not run)."""
    test, ref = s.get(PRIOR_C2ST), s.get(PRIOR_C2ST_REFERENCE) or {}
    if not test:
        return []
    if "skipped" in test:
        return [("prior test", f"skipped ({test['skipped']})")]
    rows = []
    for pool in test["pools"]:
        mine = f"{test[f'pool{pool}']:.2f} +- {test[f'pool{pool}_std']:.2f}"
        if f"pool{pool}" in ref:
            mine += f" (reference {ref[f'pool{pool}']:.2f} +- {ref[f'pool{pool}_std']:.2f})"
        rows.append((f"prior test pool {pool}", mine))
    folds = len(test[f"pool{test['pools'][0]}_folds"])
    rows.append(("prior test folds", f"{folds}, {test['n_per_side']} a side, {test['folds_by']}"))
    return rows


def prior_test_words(s: dict) -> str:
    """The plain-words line on the prior test ('' where it did not run)."""
    test, ref = s.get(PRIOR_C2ST), s.get(PRIOR_C2ST_REFERENCE)
    is_close = close.prior_test_close(test, ref)
    few = close.too_few(test, ref)
    if few is not None:
        return (
            f"Prior test: {few} slices a side, too few to judge (it judges from {close.MIN_PER_SIDE}: "
            "its folds would be a handful of images each); read the realism and the figures"
        )
    if is_close is None:
        return ""
    pool = max(p for p in test["pools"] if f"pool{p}" in ref)
    said = (
        "close to it"
        if is_close
        else f"not close (close: at most {close.close_limit(ref, pool):.2f})"
    )
    return (
        f"Prior test: a small CNN tells these samples from the decoder's reconstructions of "
        f"real {test['reference']} slices {test[f'pool{pool}']:.0%} of the time at pool {pool}, "
        f"two sets of real brains {ref[f'pool{pool}']:.0%}: {said}. The C2ST against raw real "
        "slices is bounded by the decoder's texture"
    )


def prior_report_rows(s: dict, order: float) -> list[ReportRow]:
    """The report's rows: accuracy beside the reference at each pool, coarsest first."""
    rows = []
    test, ref = s.get(PRIOR_C2ST) or {}, s.get(PRIOR_C2ST_REFERENCE) or {}
    for pool in sorted(test.get("pools", []), reverse=True):
        if f"pool{pool}" not in ref:
            continue
        v = f"{test[f'pool{pool}']:.2f} &plusmn; {test[f'pool{pool}_std']:.2f}"
        r = f"{ref[f'pool{pool}']:.2f} &plusmn; {ref[f'pool{pool}_std']:.2f}"
        where = "full resolution" if pool == 1 else f"{pool}x{pool} averaged"
        rows.append(ReportRow(
            order, f"Told from real brains ({where})", v, r,
            "How often a small CNN tells samples from the decoder's reconstructions of real "
            "brains (0.5 = chance, 1 = always); beside it, two sets of real brains' "
            f"reconstructions. Close (at pools {' and '.join(map(str, close.CLOSE_POOLS))}): at "
            f"most the reference + {close.CLOSE_MARGIN:g} + its spread",
        ))  # fmt: skip
    return rows


class PriorTwoSample(Measure):
    """Samples against reconstructions of the reference split's real slices (same decoder)."""

    name, section, order = "prior_two_sample", "samples", 60

    def enabled(self, ev) -> bool:
        """eval.c2st."""
        return bool(ev.c2st)

    def compute(self, ctx: Context) -> Result:
        """The test at PRIOR_POOLS and its reference."""
        ev = ctx.ev
        out = prior_two_sample(
            ctx.run, ctx.images, ctx.kind, ctx.reference, pools=PRIOR_POOLS, folds=ev.c2st_folds,
            seed=ev.seed, data=ctx.root, progress=ctx.progress,
        )  # fmt: skip
        return Result(out)

    def table_rows(self, v: dict) -> list[Row]:
        """Accuracy beside the reference at each pool, and the folds (before the raw C2ST's)."""
        return [Row(60, a, b) for a, b in prior_test_rows(v)]

    def table_words(self, v: dict) -> list[Row]:
        """Whether it is close to its reference, in words (after the raw C2ST's line)."""
        words = prior_test_words(v)
        return [Row(self.order, "", words)] if words else []

    def report_rows(self, v: dict) -> list[ReportRow]:
        """Each pool beside the reference (first of the classifier rows)."""
        return prior_report_rows(v, 70)


register(PriorTwoSample())
