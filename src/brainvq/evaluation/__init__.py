"""How good a run is: realism measures (realism), the classifier two-sample test (c2st), figures
(figures), `brainvq evaluate` (evaluate), bits per code of given slices (likelihood) and the HTML
report (report). The pure measures these build on are in brainvq.metrics."""
