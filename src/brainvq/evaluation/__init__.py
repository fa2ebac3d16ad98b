"""How good a run is. The measures, one object each in one file (measures/, what a measure is:
measure), and what they build on: nearest-neighbour realism (realism), the classifier two-sample
test (c2st, two_sample) and the prior's (prior_test), MS-SSIM (ms_ssim), level measures (levels);
`brainvq evaluate` (evaluate), bits per code of given slices (likelihood) and sample manifests
(manifest). The pure functions these build on are in brainvq.metrics; what a person reads of the
results (report, figures, verdict) is brainvq.reporting."""
