"""The run's training curves (``curves.html``, ``curves/*.png``; ``clipbert/reports/curves.py``)
written when fitting ends, and again after the test that follows it, so they include the test
values.

They are drawn from what the CSV logger wrote: a run without it (``logger=[]``, wandb alone)
gets no curves and a line in the log saying so. Drawing is a report, never part of training:
any failure is a warning, and the run goes on to test and write its metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl

from clipbert.reports.curves import write_run_curves
from clipbert.reports.metric_log import METRICS_FILE

log = logging.getLogger(__name__)


class TrainingCurves(pl.Callback):
    """Writes the curves into ``output_dir`` (default: the trainer's ``default_root_dir``) on
    the global-rank-zero process, at the end of fitting and after a test of the fitted model."""

    def __init__(self, output_dir: str | Path | None = None) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self._fitted = False

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fitted = True
        self.write(trainer)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitted:  # a trainer that only tests (no training) has no curves to add to
            self.write(trainer)

    def write(self, trainer: pl.Trainer) -> Path | None:
        """Write the curves; the page's path, or None when there was nothing to draw from or
        drawing failed (warned)."""
        if not trainer.is_global_zero:
            return None
        metrics_file = csv_metrics_file(trainer)
        if metrics_file is None:
            log.info("no CSV logger in this run: no training curves (logger=csv draws them)")
            return None
        run_dir = self.output_dir or Path(trainer.default_root_dir)
        try:
            page = write_run_curves(run_dir, metrics_file)
        except Exception as exc:  # a report must never fail the run it reports on
            log.warning("training curves not written (%s: %s)", type(exc).__name__, exc)
            return None
        log.info("training curves: %s", page)
        return page


def csv_metrics_file(trainer: pl.Trainer) -> Path | None:
    """The CSV logger's ``metrics.csv`` with all logged so far flushed to it, or None without
    a CSV logger."""
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.CSVLogger):
            logger.save()  # rows logged since the last flush (every log_every_n_steps)
            return Path(logger.log_dir) / METRICS_FILE.name
    return None
