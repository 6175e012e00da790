"""What report.html adds to predict.py: the whole command timed with ``report=false`` and
``report=true`` in alternating pairs on one run folder's test split, the ratio taken pair by
pair (this machine's speed drifts); the time the report itself takes (thumbnails and page, as
predict.py logs it) as a share of the run; and the page's size.

    python benchmarks/report_cost.py --run outputs/demo_video_qa/<date> --pairs 5
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report

REPO = Path(__file__).resolve().parents[1]


def latest_demo_run() -> Path:
    runs = sorted((REPO / "outputs" / "demo_video_qa").glob("*/checkpoints/best.ckpt"))
    if not runs:
        sys.exit("no demo run under outputs/demo_video_qa: run `make demo` or give --run")
    return runs[-1].parents[1]


REPORT_COST = re.compile(r"report cost: thumbnails ([0-9.]+) s, page ([0-9.]+) s")


def timed_predict(run: Path, report: bool, out: Path, split: str) -> tuple[float, float]:
    """The command's wall time, and the seconds it says the report took (0 without one)."""
    command = [
        sys.executable,
        str(REPO / "predict.py"),
        f"run_dir={run}",
        f"split={split}",
        f"report={str(report).lower()}",
        f"hydra.run.dir={out}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    cost = REPORT_COST.search(done.stdout + done.stderr)
    return wall, float(cost[1]) + float(cost[2]) if cost else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a train.py run folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    run = args.run or latest_demo_run()
    plain, with_report, ratios, inside = [], [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        timed_predict(run, True, Path(scratch) / "warmup", args.split)  # file cache, fonts
        for pair in range(args.pairs):
            on_dir, off_dir = Path(scratch) / f"on{pair}", Path(scratch) / f"off{pair}"
            # which goes first alternates, so that neither gains from the other's warm caches
            if pair % 2:
                on, report_seconds = timed_predict(run, True, on_dir, args.split)
                off, _ = timed_predict(run, False, off_dir, args.split)
            else:
                off, _ = timed_predict(run, False, off_dir, args.split)
                on, report_seconds = timed_predict(run, True, on_dir, args.split)
            plain.append(off)
            with_report.append(on)
            ratios.append(on / off)
            inside.append(report_seconds / on)
            print(
                f"pair {pair + 1}: report=false {off:.2f} s, report=true {on:.2f} s "
                f"(of which the report {report_seconds:.2f} s)"
            )
        page = Path(scratch) / "on0" / "report.html"
        size_mb = page.stat().st_size / 2**20
        examples = sum(1 for _ in (Path(scratch) / "on0" / "predictions.jsonl").open())
    rows = [
        {
            "split": f"{args.split} ({examples} questions)",
            "off": statistics.median(plain),
            "on": statistics.median(with_report),
            "ratio": statistics.median(ratios),
            "spread": f"{min(ratios):.3f}-{max(ratios):.3f}",
            "inside": statistics.median(inside),
            "size": size_mb,
        }
    ]
    columns = {
        "split": "split",
        "off": "report=false, s (median)",
        "on": "report=true, s (median)",
        "ratio": "on/off, median of pairs",
        "spread": "on/off, min-max",
        "inside": "report's own time / report=true run (median)",
        "size": "report.html, MB",
    }
    report(rows, columns, f"report.html's cost in predict.py, {args.pairs} pairs", args)


if __name__ == "__main__":
    main()
