"""The classifier two-sample test (C2ST, brainvq.evaluation.two_sample) against the real slices of
the reference split: of the test split's reconstructions (paired with their slices: the same
brains) in the `vqvae` section, and of each prior's samples; the `c2st` entry, on with eval.c2st."""

from __future__ import annotations

from brainvq.evaluation.keys import C2ST
from brainvq.evaluation.measure import Context, Measure, ReportRow, Result, Row, register
from brainvq.evaluation.two_sample import C2ST_MEANS, C2ST_POOLS, c2st_scores


def c2st_rows(result: dict | None) -> list[tuple[str, str]]:
    """Table rows of a `c2st` entry: accuracy +- spread at each pool, or why it was skipped."""
    if not result:
        return []
    if "skipped" in result:
        return [("C2ST", f"skipped ({result['skipped']})")]
    rows = []
    for pool in C2ST_POOLS:
        if f"pool{pool}" in result:
            where = "full resolution" if pool == 1 else f"{pool}x{pool} averaged"
            acc = f"{result[f'pool{pool}']:.2f} +- {result[f'pool{pool}_std']:.2f}"
            rows.append((f"C2ST {where}", acc))
    folds = len(result.get("pool1_folds", result.get("pool2_folds", [])))
    rows.append(("C2ST folds", f"{folds}, {result['n_per_side']} a side, {result['folds_by']}"))
    return rows


def c2st_words(result: dict | None, what: str) -> str:
    """The plain-words line under a table with C2ST rows ('' without them)."""
    if not result or "skipped" in result:
        return ""
    pool = 2 if "pool2" in result else 1
    where = "2x2-averaged" if pool == 2 else "full-resolution"
    return (
        f"C2ST: a small CNN trained to tell these {what} from real test slices is right "
        f"{result[f'pool{pool}']:.0%} of the time on {where} images ({C2ST_MEANS})"
    )


class ClassifierTest(Measure):
    """C2ST of ctx.images against ctx.real (folds by brain where the names carry subjects)."""

    name = "c2st"

    def __init__(self, section: str, order: float, what: str):
        self.section, self.order, self.what = section, order, what
        self.paired = section == "vqvae"  # reconstructions carry their slices' brains

    def enabled(self, ev) -> bool:
        """eval.c2st."""
        return bool(ev.c2st)

    def compute(self, ctx: Context) -> Result:
        """The `c2st` entry (or {"skipped": why})."""
        out = c2st_scores(ctx.real, ctx.images, ctx.splits, ctx.ev, paired=self.paired,
                          progress=ctx.progress, split=ctx.reference)  # fmt: skip
        return Result({C2ST: out} if out else {})

    def table_rows(self, v: dict) -> list[Row]:
        """Accuracy at each pool and the folds."""
        return [Row(self.order + 20, a, b) for a, b in c2st_rows(v.get(C2ST))]

    def table_words(self, v: dict) -> list[Row]:
        """What the accuracy says, in words."""
        words = c2st_words(v.get(C2ST), self.what)
        return [Row(self.order, "", words)] if words else []

    def report_rows(self, v: dict) -> list[ReportRow]:
        """Samples only: the 2x2-averaged accuracy, read as bounded by the decoder's texture."""
        c2st = v.get(C2ST) or {}
        if self.section != "samples" or "pool2" not in c2st:
            return []
        return [ReportRow(
            self.order + 40, "Told from raw real slices (2x2 averaged)",
            f"{c2st['pool2']:.2f} &plusmn; {c2st['pool2_std']:.2f}", "",
            "The same classifier against the real slices themselves: bounded by the "
            "decoder's texture (reconstructions of real slices score about as high)",
        )]  # fmt: skip


register(ClassifierTest("vqvae", 40, "recons"))
register(ClassifierTest("samples", 50, "samples"))
