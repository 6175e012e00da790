"""Training curves of a run folder or of a sweep's jobs: ``curves.html`` and one PNG per panel
in ``curves/``, drawn from the CSV logger's ``csv/metrics.csv``.

A run's page shows its losses, learning rates, validation metrics (test values as crosses),
throughput in videos per second, data-wait fraction, peak memory, gradient norm and whatever
else was logged, each against the optimizer step, with a table of every metric's final and
best value. A sweep's page (the folder of ``train.py -m``, holding one folder per job) draws
each metric with one line per job, labelled with the overrides that set the job apart, so the
jobs compare at a glance. Both pages are self-contained, and every file is written
atomically: a page being rewritten while someone opens it is the old page or the new one.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from clipbert.atomic_files import write_bytes_atomic, write_text_atomic
from clipbert.reports.curve_page import figure_html, page, run_table, sweep_table
from clipbert.reports.curve_panels import group
from clipbert.reports.curve_plots import run_panel_png, sweep_panel_png, sweep_plots
from clipbert.reports.metric_log import METRICS_FILE, Curve, read_metric_log

PAGE = "curves.html"
IMAGES = "curves"
LABEL_CHARS = 70  # a job's legend label: its number and as much of what sets it apart as fits


def write_run_curves(run_dir: Path, metrics_file: Path | None = None) -> Path:
    """Write ``<run_dir>/curves.html`` and ``<run_dir>/curves/<panel>.png`` from
    ``metrics_file`` (default ``<run_dir>/csv/metrics.csv``); return the page's path."""
    run_dir = Path(run_dir)
    log = read_metric_log(Path(metrics_file) if metrics_file else run_dir / METRICS_FILE)
    figures = []
    for panel, names in group(log.curves).items():
        png = run_panel_png(panel, [log.curves[n] for n in names], log.epoch_starts)
        image = Path(IMAGES) / f"{panel.name}.png"
        write_png(run_dir / image, png)
        figures.append(figure_html(panel, png, names, str(image), panel.separate))
    title = f"Training curves: {folder_name(run_dir)}"
    html = page(title, str(log.source), figures, "Final and best values", run_table(log.curves))
    return write_text_atomic(run_dir / PAGE, html)


def write_sweep_curves(sweep_dir: Path) -> Path:
    """Write ``<sweep_dir>/curves.html`` and ``<sweep_dir>/curves/<panel>.png`` comparing the
    sweep's jobs; a job that logged nothing yet is listed without lines. Return the page."""
    sweep_dir = Path(sweep_dir)
    folders = job_dirs(sweep_dir)
    if not folders:
        raise FileNotFoundError(
            f"no job folders in {sweep_dir}: a sweep folder holds one folder per job, each with "
            f"{METRICS_FILE} or .hydra/overrides.yaml"
        )
    overrides = [job_overrides(job) for job in folders]
    curves = [job_curves(job) for job in folders]
    jobs = [
        (job.name, " ".join(o), c) for job, o, c in zip(folders, overrides, curves, strict=True)
    ]
    labelled = [
        (job_label(job.name, own), c)
        for job, own, c in zip(folders, differing(overrides), curves, strict=True)
    ]
    figures = []
    for panel, names in group({name for logged in curves for name in logged}).items():
        png = sweep_panel_png(panel, names, labelled)
        image = Path(IMAGES) / f"{panel.name}.png"
        write_png(sweep_dir / image, png)
        wide = len(sweep_plots(names)) > 1
        figures.append(figure_html(panel, png, names, str(image), wide_figure=wide))
    title = f"Sweep curves: {folder_name(sweep_dir)} ({len(jobs)} jobs)"
    html = page(title, str(sweep_dir), figures, "Jobs: final values", sweep_table(jobs))
    return write_text_atomic(sweep_dir / PAGE, html)


def write_curves(folder: Path) -> Path:
    """``write_run_curves`` for a run folder, ``write_sweep_curves`` for a sweep folder."""
    folder = Path(folder)
    if is_sweep_dir(folder):
        return write_sweep_curves(folder)
    return write_run_curves(folder)


def is_sweep_dir(folder: Path) -> bool:
    """A folder of job folders, not itself a run (it has no metrics of its own)."""
    return not (folder / METRICS_FILE).is_file() and bool(job_dirs(folder))


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep, in job order (``2`` before ``10``)."""
    jobs = [
        child
        for child in sweep_dir.iterdir()
        if child.is_dir()
        and ((child / METRICS_FILE).is_file() or (child / ".hydra" / "overrides.yaml").is_file())
    ]
    return sorted(jobs, key=lambda job: (len(job.name), job.name))


def job_curves(job: Path) -> dict[str, Curve]:
    """A job's curves; none for a job that has not written ``metrics.csv`` (yet)."""
    try:
        return read_metric_log(job / METRICS_FILE).curves
    except FileNotFoundError:
        return {}


def job_overrides(job: Path) -> list[str]:
    """What the job changed (``.hydra/overrides.yaml``); none if unknown."""
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    overrides = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def differing(overrides: list[list[str]]) -> list[list[str]]:
    """Each job's overrides less those every job shares (the sweep's fixed command line),
    which would fill the legend without telling the jobs apart."""
    known = [set(own) for own in overrides if own]
    shared = set.intersection(*known) if len(known) > 1 else set()
    return [[o for o in own if o not in shared] for own in overrides]


def job_label(name: str, overrides: list[str]) -> str:
    label = f"{name}: {' '.join(overrides)}" if overrides else name
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 3] + "..."


def write_png(path: Path, png: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, png)


def folder_name(folder: Path) -> str:
    """The folder's own name, also for ``.`` or a path ending in ``/``."""
    return folder.resolve().name or str(folder)
