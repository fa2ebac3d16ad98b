"""Bits per code of the reference split's real code maps under a prior that has a likelihood
(autoregressive priors): how well it predicts unseen real code maps."""

from __future__ import annotations

import torch

from brainvq.evaluation.measure import Context, Measure, Result, Row, register

BITS = "test_bits_per_code"


class Likelihood(Measure):
    """Mean bits per code of the real code maps (ctx.real_codes); nothing for other priors."""

    name, section, order = "likelihood", "samples", 30

    def compute(self, ctx: Context) -> Result:
        """The mean, where the prior has a likelihood."""
        if not ctx.prior.has_likelihood:
            return Result()
        bits = ctx.prior.bits_per_code(torch.from_numpy(ctx.real_codes)).numpy()
        return Result({BITS: float(bits.mean())})

    def table_rows(self, v: dict) -> list[Row]:
        """Bits per code."""
        return [Row(30, "bits/code on test maps", f"{v[BITS]:.3f}")] if BITS in v else []


register(Likelihood())
