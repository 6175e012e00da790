"""What report.html adds to predict.py: the whole command timed with ``report=false`` and
``report=true`` in alternating pairs on one run folder's test split, the ratio taken pair by
pair (this machine's speed drifts), and the page's size.

    python benchmarks/report_cost.py --run outputs/demo_video_qa/<date> --pairs 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import markdown_table, record

REPO = Path(__file__).resolve().parents[1]


def latest_demo_run() -> Path:
    runs = sorted((REPO / "outputs" / "demo_video_qa").glob("*/checkpoints/best.ckpt"))
    if not runs:
        sys.exit("no demo run under outputs/demo_video_qa: run `make demo` or give --run")
    return runs[-1].parents[1]


def timed_predict(run: Path, report: bool, out: Path, split: str) -> float:
    command = [
        sys.executable,
        str(REPO / "predict.py"),
        f"run_dir={run}",
        f"split={split}",
        f"report={str(report).lower()}",
        f"hydra.run.dir={out}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a train.py run folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    run = args.run or latest_demo_run()
    plain, with_report, ratios = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        timed_predict(run, True, Path(scratch) / "warmup", args.split)  # file cache, fonts
        for pair in range(args.pairs):
            off = timed_predict(run, False, Path(scratch) / f"off{pair}", args.split)
            on = timed_predict(run, True, Path(scratch) / f"on{pair}", args.split)
            plain.append(off)
            with_report.append(on)
            ratios.append(on / off)
            print(f"pair {pair + 1}: report=false {off:.2f} s, report=true {on:.2f} s")
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
            "size": size_mb,
        }
    ]
    columns = {
        "split": "split",
        "off": "report=false, s (median)",
        "on": "report=true, s (median)",
        "ratio": "on/off, median of pairs",
        "spread": "on/off, min-max",
        "size": "report.html, MB",
    }
    table = markdown_table(rows, columns)
    print("\n".join(table))
    if not args.no_record:
        record(f"report.html's cost in predict.py, {args.pairs} pairs", torch.device("cpu"), table)


if __name__ == "__main__":
    main()
