"""A CSV logger that survives resume: it appends to metrics.csv instead of deleting it."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from brainvq.io import atomic_path


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys = sorted(header)

    def drop_rows_from(self, step: int) -> None:
        """Forget rows logged at or after `step` (work redone after resuming from a checkpoint)."""
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            rows = [
                r for r in reader if r.get("step") in ("", None) or int(float(r["step"])) < step
            ]
        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv keeps the rows of earlier, interrupted sessions of a stage."""

    @property
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
