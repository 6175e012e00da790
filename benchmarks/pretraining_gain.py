"""Does pre-training help? The demo's answer, measured.

For each seed: pre-train the tiny model on the demo's captions (``task=demo_pretrain``), then
finetune video QA on a tenth of its training questions (``experiment=demo_low_data``) twice,
from that checkpoint and from scratch, with the same seed, and compare their test accuracy.
Every run is a plain ``train.py`` in its own process, so the figures are what a user gets.

    python benchmarks/pretraining_gain.py --seeds 42 --out outputs/pretraining_gain
    python benchmarks/pretraining_gain.py --seeds 42 1 --record    # appends to RESULTS.md

``make demo-pretrain`` runs one seed (about 45 minutes on 2 idle CPU cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import markdown_table, record

REPO = Path(__file__).resolve().parents[1]
ANSWER_TYPES = ("color", "shape", "count", "motion")


def run_train(folder: Path, *overrides: str) -> tuple[dict, float]:
    """``train.py`` with ``overrides`` writing to ``folder``: its metrics.json and minutes."""
    command = [
        sys.executable,
        str(REPO / "train.py"),
        *overrides,
        "trainer.accelerator=cpu",
        f"hydra.run.dir={folder}",
    ]
    print("$", " ".join(command[1:]), flush=True)
    began = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    minutes = (time.perf_counter() - began) / 60
    return json.loads((folder / "metrics.json").read_text()), minutes


def compare(seed: int, out: Path, extra: list[str]) -> dict:
    """One seed's pre-training and its two finetunings; ``extra`` overrides all three."""
    pretrained, pretrain_minutes = run_train(
        out / f"seed{seed}" / "pretrain", "task=demo_pretrain", f"seed={seed}", *extra
    )
    checkpoint = out / f"seed{seed}" / "pretrain" / "checkpoints" / "last.ckpt"
    low_data = ["experiment=demo_low_data", f"seed={seed}", *extra]
    scratch, scratch_minutes = run_train(out / f"seed{seed}" / "scratch", *low_data)
    started, started_minutes = run_train(
        out / f"seed{seed}" / "pretrained", *low_data, f"model.init_from={checkpoint}"
    )
    row = {
        "seed": seed,
        "val_mlm_acc": pretrained["val/mlm_acc"],
        "val_itm_acc": pretrained["val/itm_acc"],
        "scratch": scratch["test/acc"],
        "pretrained": started["test/acc"],
        "gain": started["test/acc"] - scratch["test/acc"],
        "minutes": pretrain_minutes + scratch_minutes + started_minutes,
    }
    for kind in ANSWER_TYPES:
        row[f"scratch_{kind}"] = scratch[f"test/acc_{kind}"]
        row[f"pretrained_{kind}"] = started[f"test/acc_{kind}"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--out", type=Path, default=Path("outputs/pretraining_gain"))
    parser.add_argument(
        "--override", nargs="*", default=[], help="train.py overrides for all three runs"
    )
    parser.add_argument("--record", action="store_true", help="append the table to RESULTS.md")
    args = parser.parse_args()
    rows = [compare(seed, args.out.resolve(), args.override) for seed in args.seeds]
    columns = {
        "seed": "seed",
        "val_mlm_acc": "pre-training val MLM acc",
        "val_itm_acc": "val ITM acc",
        "scratch": "test acc from scratch",
        "pretrained": "test acc pre-trained",
        "gain": "gain",
        **{f"scratch_{k}": f"{k} (scratch)" for k in ANSWER_TYPES},
        **{f"pretrained_{k}": f"{k} (pre-trained)" for k in ANSWER_TYPES},
        "minutes": "minutes, all 3 runs",
    }
    table = markdown_table(rows, columns)
    print("\n".join(table))
    summary = args.out / "comparison.json"
    summary.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written: {summary}")
    if args.record:
        record(
            "Pre-training on the demo: 10% of the QA training questions", torch.device("cpu"), table
        )


if __name__ == "__main__":
    main()
