"""Resident memory of the training loader over many multi-clip batches (the original's loader
grew here, its issue #18).

Runs the real DataModule (LMDB, decoder=auto, worker processes) on the demo data with 8 clips x 2
frames per video, for ``--batches`` batches (epochs repeat as needed), and samples the resident
set size of the main process plus its workers from /proc (Linux). Growth is measured from the
end of the warm-up to the end, as a fraction of the warm-up level.

    .venv/bin/python benchmarks/loader_memory.py --batches 1000 --json /tmp/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from clipbert.runs.configs import CONFIG_DIR


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` and of all its descendants."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # the process ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        pending.extend(int(child) for child in children)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    overrides = [
        "task=demo_video_qa",
        f"paths.data_root={Path(args.data_root).resolve()}",
        "task.datamodule.train_sampling.n_clips=8",
        f"task.datamodule.batch_size={args.batch_size}",
        f"task.datamodule.num_workers={args.workers}",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    datamodule = instantiate(cfg.task.datamodule)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()

    samples: list[tuple[int, int]] = []
    began = time.perf_counter()
    done = 0
    while done < args.batches:
        for _ in loader:  # persistent workers: the same processes across epochs
            done += 1
            if done % 25 == 0 or done == args.warmup:
                samples.append((done, rss_bytes(os.getpid())))
            if done >= args.batches:
                break
    elapsed = time.perf_counter() - began
    at_warmup = next(rss for step, rss in samples if step >= args.warmup)
    final = samples[-1][1]
    peak = max(rss for step, rss in samples if step >= args.warmup)
    result = {
        "batches": done,
        "videos": done * args.batch_size,
        "seconds": round(elapsed, 1),
        "rss_after_warmup_mib": round(at_warmup / 2**20, 1),
        "rss_final_mib": round(final / 2**20, 1),
        "rss_peak_after_warmup_mib": round(peak / 2**20, 1),
        "growth_after_warmup": round(final / at_warmup - 1, 4),
        "peak_growth_after_warmup": round(peak / at_warmup - 1, 4),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**result, "samples": samples}, indent=2) + "\n")


if __name__ == "__main__":
    main()
