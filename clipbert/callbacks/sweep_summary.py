"""A table of every job of a Hydra multirun (``python train.py -m ...``), written when it ends.

Each job folder holds ``.hydra/overrides.yaml`` (what the job changed) and, once the job has
finished, ``metrics.json``. The summary lists one row per job, best first by the task's
validation metric, in ``summary.csv`` and ``summary.md`` beside the job folders; a job that
failed or was stopped has no metrics and is listed last, marked so. Beside them, ``curves.html``
draws every job's logged metrics on shared plots (``clipbert/reports/curves.py``).

Whatever ran the jobs (the local launcher, submitit's local or SLURM launcher, or a hand-made job
array writing into one folder), ``clipbert-summarize <sweep dir>`` writes the same summary
afterwards, ranked by the metric recorded in the jobs' configs.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from clipbert.atomic_files import write_text_atomic
from clipbert.reports.curves import write_sweep_curves

log = logging.getLogger(__name__)

FIXED_COLUMNS = ("job", "overrides", "status")


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder (a folder holding ``.hydra/overrides.yaml``), in job order."""
    jobs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    rows = []
    for job in sorted(jobs, key=lambda p: (len(p.name), p.name)):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        row: dict[str, Any] = {"job": job.name, "overrides": " ".join(overrides)}
        metrics_file = job / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            row["status"] = "done"
            row.update({k: v for k, v in metrics.items() if isinstance(v, int | float)})
        else:
            row["status"] = "no metrics (failed or stopped)"
        rows.append(row)
    return rows


def recorded_monitor(sweep_dir: Path) -> tuple[str, str]:
    """The validation metric and its mode (``task.monitor``, ``task.monitor_mode``) from the
    first job's saved config (``<job>/.hydra/config.yaml``)."""
    for config_file in sorted(sweep_dir.glob("*/.hydra/config.yaml")):
        task = OmegaConf.load(config_file).get("task") or {}
        if task.get("monitor"):
            return str(task.monitor), str(task.get("monitor_mode", "max"))
    raise FileNotFoundError(
        f"no job folder in {sweep_dir} holds .hydra/config.yaml with task.monitor"
    )


def rank_rows(rows: list[dict[str, Any]], monitor: str, mode: str) -> list[dict[str, Any]]:
    """Best first by ``monitor`` (``mode`` max or min); rows without it last, in job order."""
    scored = [r for r in rows if isinstance(r.get(monitor), int | float)]
    unscored = [r for r in rows if r not in scored]
    scored.sort(key=lambda r: r[monitor], reverse=mode == "max")
    return scored + unscored


def columns_of(rows: list[dict[str, Any]], monitor: str) -> list[str]:
    metrics = sorted({k for r in rows for k in r} - set(FIXED_COLUMNS) - {monitor})
    return [*FIXED_COLUMNS, monitor, *metrics]


def to_markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_summary(sweep_dir: Path, monitor: str, mode: str) -> list[dict[str, Any]]:
    """Write ``summary.csv`` and ``summary.md`` in ``sweep_dir``; return the ranked rows."""
    rows = rank_rows(sweep_rows(sweep_dir), monitor, mode)
    columns = columns_of(rows, monitor)
    write_text_atomic(sweep_dir / "summary.csv", to_csv(rows, columns))
    write_text_atomic(sweep_dir / "summary.md", to_markdown(rows, columns))
    return rows


def short_table(rows: list[dict[str, Any]], monitor: str) -> str:
    """The jobs with the monitored metric and its test counterpart only: for the log."""
    return to_markdown(rows, [*FIXED_COLUMNS, monitor, "test/" + monitor.split("/", 1)[-1]])


class SweepSummary(Callback):
    """Hydra callback: after a multirun, summarise its jobs (see the module docstring)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        monitor, mode = config.task.monitor, config.task.monitor_mode
        rows = write_summary(sweep_dir, monitor, mode)
        table = short_table(rows, monitor)
        log.info("sweep of %d jobs, best first by %s:\n%s", len(rows), monitor, table)
        log.info("summary: %s and summary.csv", sweep_dir / "summary.md")
        write_comparison_page(sweep_dir)


def write_comparison_page(sweep_dir: Path) -> Path | None:
    """The sweep's ``curves.html``; a warning, not an error, when it cannot be drawn: the
    jobs have run and their summary is written whatever happens to a page about them."""
    try:
        page = write_sweep_curves(sweep_dir)
    except Exception as exc:
        log.warning("sweep curves not written (%s: %s)", type(exc).__name__, exc)
        return None
    log.info("curves of every job: %s", page)
    return page
