"""What a person reads of an evaluated run: the verdict and its warnings (verdict), the figures
(figures) and the HTML report (report). It reads the measures' rows (brainvq.evaluation.measures)
and metrics.json; it measures nothing itself."""
