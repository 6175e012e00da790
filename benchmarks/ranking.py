"""Retrieval ranking cost: scoring every caption against every video, by the number of captions.

Runs MSRVTT retrieval's module (ResNet-50 + BERT-base, ITM head) as evaluation does: the CNN
and visual embeddings once per video, then BERT once per (caption, video, clip) triple, in
blocks of ``ranking_pairs``. Videos are 320x240 uint8 (MSRVTT's size) resized to
``image_size``; captions are 20 tokens. Each setting runs in a fresh process.

    .venv/bin/python benchmarks/ranking.py --captions 8 32 128
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from common import (
    full_size_task,
    median_seconds,
    peak_memory_mb,
    report,
    run_isolated,
    video_qa_batch,
)

COLUMNS = {
    "videos": "videos",
    "captions": "captions",
    "n_clips": "clips",
    "seconds": "seconds",
    "ms_per_pair": "ms per (caption, video) pair",
    "peak_memory_mb": "peak memory MiB",
}


@dataclass
class Captions:
    """What ``RetrievalTask.score_videos`` reads of the split's tokenized captions."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.input_ids)


def measure(setting: dict, args: argparse.Namespace) -> dict:
    """Time one setting (runs in its own process)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    task = full_size_task(args.image_size, task="msrvtt_ret").to(device).eval()
    batch = video_qa_batch(setting["videos"], setting["n_clips"], 2, args.text_len, device)
    captions = video_qa_batch(setting["captions"], 1, 1, args.text_len, device)
    texts = Captions(captions.input_ids, captions.attention_mask)
    seconds = median_seconds(  # eval mode: frames are resized in the CNN's chunks
        lambda: task.score_videos(batch.frames, texts),
        repeats=args.repeats,
        warmup=1,
        device=device,
    )
    pairs = setting["videos"] * setting["captions"]
    return {
        **setting,
        "seconds": seconds,
        "ms_per_pair": 1e3 * seconds / pairs,
        "peak_memory_mb": peak_memory_mb(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", nargs="+", type=int, default=[8, 32, 128])
    parser.add_argument("--videos", nargs="+", type=int, default=[4])
    parser.add_argument("--n-clips", nargs="+", type=int, default=[1])
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--text-len", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()

    keys = ("videos", "captions", "n_clips")
    combos = itertools.product(args.videos, sorted(args.captions), args.n_clips)
    rows = run_isolated(measure, [dict(zip(keys, c, strict=True)) for c in combos], args)
    report(rows, COLUMNS, f"Retrieval ranking at {args.image_size} px", args)


if __name__ == "__main__":
    main()
