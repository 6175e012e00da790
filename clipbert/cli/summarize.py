"""``clipbert-summarize <sweep dir>``: the sweep summary (summary.md, summary.csv) of a folder of
jobs, for sweeps whose launcher process did not write it: a hand-made SLURM job array, a sweep
stopped before its end, or one still running (the jobs without metrics are listed last)."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipbert.callbacks.sweep_summary import recorded_monitor, short_table, write_summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="clipbert-summarize", description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="the folder holding the job folders")
    parser.add_argument("--monitor", help="rank by this metric (default: the jobs' task.monitor)")
    parser.add_argument(
        "--mode", choices=("max", "min"), help="default: task.monitor_mode, or max with --monitor"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Write the summary in the sweep folder and print the ranking."""
    args = parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"error: no folder {args.sweep_dir}")
    if args.monitor:
        monitor, mode = args.monitor, args.mode or "max"
    else:
        try:
            monitor, mode = recorded_monitor(args.sweep_dir)
        except FileNotFoundError as exc:
            raise SystemExit(f"error: {exc}; pass --monitor") from None
        mode = args.mode or mode
    rows = write_summary(args.sweep_dir, monitor, mode)
    print(f"{len(rows)} jobs, best first by {monitor}:\n{short_table(rows, monitor)}")
    print(f"summary: {args.sweep_dir / 'summary.md'} and summary.csv")


if __name__ == "__main__":
    main()
