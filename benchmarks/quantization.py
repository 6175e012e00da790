"""quantize=int8 against fp32 on a trained run's split: do the answers agree, does the accuracy
hold, and how much faster is the whole ``predict.py``? The agreement check: top-1 answers equal
on at least 99% of the questions and accuracy within 0.5 points (exit status 1 otherwise).

    python benchmarks/quantization.py --run outputs/demo_video_qa/<date>
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report

REPO = Path(__file__).resolve().parents[1]
MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.005


def predicted(run: Path, out: Path, split: str, quantize: str | None) -> float:
    """Run predict.py into ``out``; its wall time in seconds."""
    command = [
        sys.executable,
        str(REPO / "predict.py"),
        f"run_dir={run}",
        f"split={split}",
        f"quantize={quantize or 'null'}",
        "report=false",
        f"hydra.run.dir={out}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


def answers(folder: Path) -> dict[str, object]:
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    return {str(r["question_id"]): r["prediction"] for r in map(json.loads, lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a train.py run folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        fp32_dir, int8_dir = Path(scratch) / "fp32", Path(scratch) / "int8"
        fp32_s = predicted(args.run, fp32_dir, args.split, None)
        int8_s = predicted(args.run, int8_dir, args.split, "int8")
        reference, quantized = answers(fp32_dir), answers(int8_dir)
        fp32_acc = json.loads((fp32_dir / "metrics.json").read_text())["acc"]
        int8_acc = json.loads((int8_dir / "metrics.json").read_text())["acc"]
    agreement = sum(quantized[q] == a for q, a in reference.items()) / len(reference)
    passed = agreement >= MIN_AGREEMENT and fp32_acc - int8_acc <= MAX_ACCURACY_DROP
    row = {
        "split": f"{args.split} ({len(reference)} questions)",
        "agreement": agreement,
        "fp32_acc": fp32_acc,
        "int8_acc": int8_acc,
        "fp32_s": fp32_s,
        "int8_s": int8_s,
        "verdict": "pass" if passed else "FAIL",
    }
    columns = {
        "split": "split",
        "agreement": "top-1 equal",
        "fp32_acc": "acc fp32",
        "int8_acc": "acc int8",
        "fp32_s": "predict.py fp32, s",
        "int8_s": "predict.py int8, s",
        "verdict": f"agreement >= {MIN_AGREEMENT}, acc drop <= {MAX_ACCURACY_DROP}",
    }
    report([row], columns, "quantize=int8 against fp32", args)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
