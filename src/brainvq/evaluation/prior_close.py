"""When the prior's two-sample test (brainvq.evaluation.prior_test) reads as close to its
reference: the verdict, the report and the measure's own table words use it. Standard library
only: `brainvq --help` states these thresholds (brainvq.reporting.verdict.THRESHOLDS_HELP)."""

from __future__ import annotations

# the prior's two-sample test (brainvq.evaluation.prior_test) is close to its reference at a pool
# when its accuracy is at most the reference's + CLOSE_MARGIN + the reference's spread over folds,
# at each of CLOSE_POOLS the image size allows
CLOSE_MARGIN = 0.1
CLOSE_POOLS = (2, 4)
# fewer slices a side than this in the test or its reference and it does not judge: with 5 folds
# each held-out fold has under 8 images, and on the demo's one template brain (13 a side) the
# same two sets scored 0.0 to 1.0 from fold to fold (spread +-0.33)
MIN_PER_SIDE = 20


def too_few(test: dict | None, ref: dict | None) -> int | None:
    """Where both the test and its reference ran and one had under MIN_PER_SIDE slices a side:
    the smaller count; else None (a skipped side says why itself)."""
    if not test or not ref or "n_per_side" not in test or "n_per_side" not in ref:
        return None
    fewest = min(test["n_per_side"], ref["n_per_side"])
    return fewest if fewest < MIN_PER_SIDE else None


def prior_test_close(test: dict | None, ref: dict | None) -> bool | None:
    """True when the prior's two-sample test is close to its reference at every pool of
    CLOSE_POOLS that both hold (accuracy <= reference + CLOSE_MARGIN + reference's std), False
    when it is not at one of them, None when there is nothing to compare (skipped or absent) or
    too few slices to judge (``too_few``)."""
    if not test or not ref or too_few(test, ref) is not None:
        return None
    pools = [p for p in CLOSE_POOLS if f"pool{p}" in test and f"pool{p}" in ref]
    if not pools:
        return None
    return all(test[f"pool{p}"] <= close_limit(ref, p) for p in pools)


def close_limit(ref: dict, pool: int) -> float:
    """The highest accuracy at ``pool`` that reads as close to the reference ``ref``."""
    return ref[f"pool{pool}"] + CLOSE_MARGIN + ref.get(f"pool{pool}_std", 0.0)
