"""``clipbert-curves <folder> [<folder> ...]``: training curves (``curves.html`` and
``curves/*.png``) for run folders and sweep folders, whenever you want them: a run still
training, one trained before the curves were drawn at its end, or a sweep whose launcher did
not finish. A folder with ``csv/metrics.csv`` is a run; a folder of job folders is a sweep,
drawn as one page comparing its jobs (``--jobs`` also redraws each job's own page)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipbert.reports.curves import is_sweep_dir, job_dirs, write_run_curves, write_sweep_curves
from clipbert.reports.metric_log import METRICS_FILE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="clipbert-curves", description=__doc__)
    parser.add_argument("folders", nargs="+", type=Path, help="run or sweep folders")
    parser.add_argument(
        "--jobs", action="store_true", help="for a sweep, also write each job's own curves"
    )
    return parser.parse_args(argv)


def write_for(folder: Path, jobs: bool) -> list[Path]:
    """The pages written for one folder: a run's, or a sweep's (and its jobs' with ``jobs``)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    if not is_sweep_dir(folder):
        return [write_run_curves(folder)]
    pages = [write_sweep_curves(folder)]
    if jobs:
        pages += [
            write_run_curves(job) for job in job_dirs(folder) if (job / METRICS_FILE).is_file()
        ]
    return pages


def main(argv: list[str] | None = None) -> None:
    """Write the curves of every folder given; print each page; exit 1 if any folder failed,
    after trying the others."""
    args = parse_args(argv)
    failed = False
    for folder in args.folders:
        try:
            for page in write_for(folder, args.jobs):
                print(page)
        except (OSError, ValueError) as exc:  # missing or unreadable: say so, go on
            print(f"error: {exc}", file=sys.stderr)
            failed = True
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
