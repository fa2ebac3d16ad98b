"""The metrics.json keys that more than the measure writing them reads (the verdict, the report,
the figures, benchmarks), each spelled once. Standard library only: the verdict imports it, and
`brainvq --help` imports the verdict. A key no other module reads stays in its measure's file."""

from __future__ import annotations

# the VQ-VAE's section (brainvq.evaluation.measures.reconstruction, codebook)
SSIM, PSNR = "ssim", "psnr"
CODES_USED, CODEBOOK_SIZE, TEST_POSITIONS = "codes_used", "codebook_size", "test_positions"
# each prior's samples (brainvq.evaluation.measures.nearest: one nearest-neighbour search)
N_SAMPLES = "n_samples"
REALISM_RATIO = "realism_ratio"
DIVERSITY_SAMPLES, DIVERSITY_REAL, DIVERSITY_GAP = (
    "diversity_samples",
    "diversity_real_test",
    "diversity_gap",
)
COPIES, COPY_THRESHOLD = "copies", "copy_threshold"
# the classifier tests (brainvq.evaluation.measures.classifier_test, prior_two_sample)
C2ST = "c2st"
PRIOR_C2ST, PRIOR_C2ST_REFERENCE = "prior_c2st", "prior_c2st_reference"
