"""Every measure `evaluate` computes, one file each (brainvq.evaluation.measure says what a measure
is). Importing this package imports each of its modules, and each registers its measure: a new
measure is a new file here, and nothing else changes.

The VQ-VAE's section: reconstruction (SSIM, PSNR), codebook (use, perplexity), recon_realism
(the realism ratio of reconstructions), classifier_test (C2ST of reconstructions). Each prior's
samples: nearest (realism, diversity, copies, code use: one nearest-neighbour search),
sampling (how they were drawn), likelihood (bits per code), ms_ssim_diversity, classifier_test
(C2ST against raw real slices), prior_two_sample (against reconstructions of real brains)."""

from __future__ import annotations

import importlib
import pkgutil

from brainvq.evaluation.measure import (
    measure_warnings,
    registered,
    report_rows,
    run_measures,
    table_rows,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["measure_warnings", "registered", "report_rows", "run_measures", "table_rows"]
