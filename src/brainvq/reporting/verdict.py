"""Does a run look good? One warning line for each weak result, naming the setting that would help,
and a one-sentence verdict for the top of the report.

Every threshold is a named constant here; `brainvq run --help`, `brainvq evaluate --help` and the
README state them (THRESHOLDS_HELP). They read the sections `evaluate` writes to metrics.json:

- a weak prior: its samples' realism ratio (mean NN-SSIM of samples / that of real test slices)
  below WEAK_REALISM: the samples are much further from every training slice than new real slices
  are, which on the images means noise or implausible anatomy;
- samples too alike: their mean pairwise SSIM over the real test slices' by more than ALIKE_GAP
  (the prior draws few different slices);
- copies: more than COPY_SHARE of the samples closer to a training slice than any real test slice
  comes (the prior recalls training slices instead of drawing new ones);
- a weak VQ-VAE: test reconstruction SSIM below WEAK_SSIM (what a few minutes of CPU training
  reach at 128x128 and 256x256; samples cannot look better than reconstructions);
- a mostly dead codebook: under DEAD_CODEBOOK of the codes the test split could show are used;
- samples a classifier tells from real brains: the prior's two-sample test (its samples against
  the VQ-VAE's reconstructions of real slices, same decoder; brainvq.evaluation.prior_test) is
  not close to its reference (reconstructions of two sets of real brains) at pool 2 or 4: above
  the reference by more than CLOSE_MARGIN plus the reference's spread over folds (not judged
  with under MIN_PER_SIDE slices a side). Only when it is close does the verdict say the samples
  look like real brains.
"""

from __future__ import annotations

from dataclasses import dataclass

from brainvq.config import KindColumn
from brainvq.evaluation.keys import (
    CODEBOOK_SIZE,
    CODES_USED,
    COPIES,
    DIVERSITY_GAP,
    DIVERSITY_REAL,
    DIVERSITY_SAMPLES,
    N_SAMPLES,
    PRIOR_C2ST,
    PRIOR_C2ST_REFERENCE,
    REALISM_RATIO,
    SSIM,
    TEST_POSITIONS,
)
from brainvq.evaluation.measure import measure_warnings
from brainvq.evaluation.prior_close import (
    CLOSE_MARGIN,
    CLOSE_POOLS,
    MIN_PER_SIDE,
    close_limit,
    prior_test_close,
    too_few,
)

WEAK_REALISM = 0.7  # realism ratio under this: a weak prior
ALIKE_GAP = 0.1  # samples' mean pairwise SSIM above real slices' by more: too alike
COPY_SHARE = 0.05  # share of samples that are copies above this: memorising
WEAK_SSIM = 0.8  # VQ-VAE test reconstruction SSIM under this: a weak VQ-VAE
DEAD_CODEBOOK = 0.1  # share of the codes the test split could show that are used, under this

THRESHOLDS_HELP = (
    f"It warns, one line each with the setting that would help, when a prior's realism ratio is "
    f"under {WEAK_REALISM}, its samples' mean pairwise SSIM is over real slices' by more than "
    f"{ALIKE_GAP}, over {COPY_SHARE:.0%} of samples copy a training slice, the VQ-VAE's test SSIM "
    f"is under {WEAK_SSIM}, under {DEAD_CODEBOOK:.0%} of the codebook is used on the test split, "
    f"or a classifier tells a prior's samples from the decoder's reconstructions of real brains "
    f"better than it tells two sets of real brains apart (its accuracy at pool "
    f"{' or '.join(map(str, CLOSE_POOLS))} above the reference's by more than {CLOSE_MARGIN:g} plus "
    f"the reference's spread; not judged under {MIN_PER_SIDE} slices a side); only then does it "
    f"say the samples look like real brains."
)

PRIOR_NAMES = KindColumn("title")  # {kind: its title}, every registered kind (brainvq.config.kinds)


@dataclass
class Finding:
    """One weak result: which section of metrics.json, and the line that says so."""

    section: str
    text: str
    short: str = ""  # a few words for the verdict line


def _longer(section: str, finished: dict | None) -> str:
    """How to train a stage longer: its step budget, with the steps it ended at where known
    (``finished``: its RUN/state/STAGE/finished.json)."""
    done = f"; it ended after {finished['steps']} steps" if finished else ""
    return f"raise --{section}.max_steps{done}; the same command then goes on from there"


def vqvae_findings(m: dict, finished: dict | None = None) -> list[Finding]:
    """Warnings on the VQ-VAE's section of metrics.json."""
    out = []
    s = m.get(SSIM, {}).get("mean")
    if s is not None and s < WEAK_SSIM:
        out.append(
            Finding(
                "vqvae",
                short="the VQ-VAE is weak",
                text=f"the VQ-VAE is weak: test reconstruction SSIM {s:.3f} is under {WEAK_SSIM} "
                f"(samples cannot look better than reconstructions): train it longer "
                f"({_longer('train', finished)})",
            )
        )
    used, size = m.get(CODES_USED), m.get(CODEBOOK_SIZE)
    positions = m.get(TEST_POSITIONS, size)
    if used is not None and size:
        possible = max(1, min(size, positions or size))
        if used / possible < DEAD_CODEBOOK:
            out.append(
                Finding(
                    "vqvae",
                    short="its codebook is mostly dead",
                    text=f"the codebook is mostly dead: {used} of {size} codes used on the test split "
                    f"(under {DEAD_CODEBOOK:.0%}): keep dead-code restarts on "
                    "(--vqvae.dead_code_threshold 1), try --vqvae.kmeans_init true, or use a "
                    "smaller --vqvae.codebook_size (all with --fresh)",
                )
            )
    return out + _measured("vqvae", "vqvae", m)


def sample_findings(kind: str, s: dict, finished: dict | None = None) -> list[Finding]:
    """Warnings on the samples-KIND section of metrics.json."""
    name, out = PRIOR_NAMES.get(kind, kind), []
    section = f"samples-{kind}"
    ratio = s.get(REALISM_RATIO)
    if ratio is not None and ratio < WEAK_REALISM:
        out.append(
            Finding(
                section,
                short=f"the {name} prior is undertrained: its samples do not look like brains",
                text=f"the {name} prior is weak: its samples' realism ratio {ratio:.2f} is far below "
                f"real slices' 1.0 (warns under {WEAK_REALISM}), so they will not look like "
                f"brains: train it longer ({_longer('prior', finished)})",
            )
        )
    gap = s.get(DIVERSITY_GAP)
    if gap is not None and gap > ALIKE_GAP:
        out.append(
            Finding(
                section,
                short=f"the {name} prior's samples are too alike",
                text=f"the {name} prior's samples are too alike: mean pairwise SSIM "
                f"{s[DIVERSITY_SAMPLES]:.2f} against real slices' {s[DIVERSITY_REAL]:.2f} "
                f"(warns {ALIKE_GAP} above): sample at a higher --temperature (now "
                f"{s.get('temperature', 'the default')}) or train it longer "
                f"({_longer('prior', finished)})",
            )
        )
    test, ref = s.get(PRIOR_C2ST), s.get(PRIOR_C2ST_REFERENCE)
    if prior_test_close(test, ref) is False:
        pool = max(p for p in CLOSE_POOLS if f"pool{p}" in test and f"pool{p}" in ref)
        out.append(
            Finding(
                section,
                short=f"a classifier tells the {name} prior's samples from real brains",
                text=f"a classifier tells the {name} prior's samples from the VQ-VAE's "
                f"reconstructions of real {test.get('reference', 'test')} brains (same decoder: "
                f"only the code maps differ) {test[f'pool{pool}']:.0%} of the time at pool {pool}, "
                f"against {ref[f'pool{pool}']:.0%} for two sets of real brains (close: at most "
                f"{close_limit(ref, pool):.2f}): the anatomy it draws is not yet a real brain's "
                f"(see the samples beside reconstructions at the same levels): train it longer "
                f"({_longer('prior', finished)}) or choose --temperature/--top-k on the validation "
                "brains (bench/choose_sampling.py)",
            )
        )
    copies, n = s.get(COPIES, 0), s.get(N_SAMPLES, 0)
    if n and copies / n > COPY_SHARE:
        out.append(
            Finding(
                section,
                short=f"the {name} prior copies training slices",
                text=f"the {name} prior copies training slices: {copies} of {n} samples are closer to "
                f"one than any real test slice comes (warns over {COPY_SHARE:.0%}): it has "
                "memorised them; train it for fewer steps (--prior.max_steps with --fresh) or "
                "sample at a higher --temperature",
            )
        )
    return out + _measured(section, "samples", s)


def _measured(section: str, measures: str, values: dict) -> list[Finding]:
    """The registered measures' own warnings on a section (brainvq.evaluation.measure)."""
    return [Finding(section, text, text) for text in measure_warnings(measures, values)]


def findings(metrics: dict, finished: dict | None = None) -> list[Finding]:
    """Every warning on a run's metrics.json (the VQ-VAE's, then each prior's samples');
    ``finished``: {stage: its finished.json} ("vqvae", "prior-KIND"), to say where each ended."""
    finished = finished or {}
    out = vqvae_findings(metrics.get("vqvae", {}), finished.get("vqvae"))
    for section, values in metrics.items():
        if section.startswith("samples-"):
            kind = section.removeprefix("samples-")
            out += sample_findings(kind, values, finished.get(f"prior-{kind}"))
    return out


def verdict(metrics: dict, finished: dict | None = None) -> tuple[bool, str]:
    """(good, one sentence on the run) for the top of the report."""
    found = findings(metrics, finished)
    kinds = [k.removeprefix("samples-") for k in metrics if k.startswith("samples-")]
    if not kinds:
        return not found, "No samples scored yet: run `brainvq evaluate` after training a prior."
    if found:
        what = "; ".join(dict.fromkeys(f.short for f in found))
        return False, f"Not good yet: {what}. What would help:"
    parts = []
    for kind in kinds:
        s = metrics[f"samples-{kind}"]
        gap = s[DIVERSITY_SAMPLES] - s[DIVERSITY_REAL]
        varied = (
            "vary as much as real slices do"
            if abs(gap) <= 0.05
            else (
                "are a little less varied than real slices"
                if gap > 0
                else "vary more than real slices"
            )
        )
        copies = "none copies" if not s.get(COPIES) else f"{s[COPIES]} copy"
        name = f"the {PRIOR_NAMES.get(kind, kind)} prior's {s.get(N_SAMPLES)} samples"
        parts.append(
            f"{name} {_looks(s)}, {varied} (mean pairwise SSIM {s[DIVERSITY_SAMPLES]:.2f} vs "
            f"{s[DIVERSITY_REAL]:.2f}), and {copies} a training slice"
        )
    text = "; ".join(parts)
    return True, f"Looks good: {text}."


def _looks(s: dict) -> str:
    """How the samples look, by the prior's two-sample test where it ran (it is close: the
    verdict has no finding on it), else by the realism ratio alone, saying so."""
    test, ref = s.get(PRIOR_C2ST), s.get(PRIOR_C2ST_REFERENCE)
    realism = f"realism {s[REALISM_RATIO]:.2f}"
    if prior_test_close(test, ref):
        pool = max(p for p in CLOSE_POOLS if f"pool{p}" in test and f"pool{p}" in ref)
        return (
            f"look like real brains (a classifier tells them from reconstructions of real brains "
            f"{test[f'pool{pool}']:.0%} of the time at pool {pool}, two sets of real brains "
            f"{ref[f'pool{pool}']:.0%}; {realism})"
        )
    few = too_few(test, ref)
    if few is not None:
        return (
            f"are as close to the training brains as new real slices come ({realism}; the "
            f"classifier test had {few} slices a side, too few to judge (it judges from "
            f"{MIN_PER_SIDE}), so whether they look like real brains is not known)"
        )
    return (
        f"are as close to the training brains as new real slices come ({realism}; no classifier "
        "test ran, so whether they look like real brains is not known: eval.c2st=true runs it)"
    )
