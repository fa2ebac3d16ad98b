"""How a prior's samples were drawn: speed, the split they are scored against, seed, decoder and
(where the prior samples at one) temperature and top-k."""

from __future__ import annotations

from brainvq.evaluation.measure import Context, Measure, Result, Row, register

SPEED, REFERENCE = "samples_per_second", "reference"


class Sampling(Measure):
    """What brainvq.sampling reports of the draw (ctx.drawn)."""

    name, section, order = "sampling", "samples", 20

    def compute(self, ctx: Context) -> Result:
        """Speed, reference split, seed, decoder, temperature and top-k."""
        drawn = ctx.drawn
        values = {SPEED: drawn["samples_per_second"]}
        values[REFERENCE] = ctx.reference  # the real_test_* values are of this split's slices
        values["seed"] = drawn["seed"]
        values["decoder"] = drawn["decoder"]
        if ctx.prior.uses_temperature:
            values["temperature"], values["top_k"] = drawn["temperature"], drawn["top_k"]
        return Result(values)

    def table_rows(self, v: dict) -> list[Row]:
        """Samples per second."""
        return [Row(20, "samples/second", f"{v[SPEED]:.1f}")] if SPEED in v else []


register(Sampling())
