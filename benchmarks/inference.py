"""Multi-clip inference: videos/s and peak memory of the full-size model for 1, 4 and 16 clips.

Each video (320x240 uint8 frames, as MSRVTT's) is resized to ``image_size`` by the model and
answered (MSRVTT-QA's module: ResNet-50 + BERT-base, 1500 answers, one 20-token question),
under ``torch.inference_mode``. Every setting runs in a fresh process so that its peak memory
(resident set on the CPU, allocated memory on a GPU) is its own; ``memory_vs_1_clip`` compares
it with the one-clip setting of the same precision, order and batch. ``--order original`` runs
the clips one after another through the whole model, as the original does.

    .venv/bin/python benchmarks/inference.py
    .venv/bin/python benchmarks/inference.py --precision bf16 --order batched original
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
from common import (
    add_cpu_linear_option,
    full_size_task,
    median_seconds,
    peak_memory_mb,
    report,
    run_isolated,
    video_qa_batch,
)

from clipbert.allocator import keep_freed_memory
from clipbert.models.quantization import quantize_int8

COLUMNS = {
    "precision": "precision",
    "allocator": "allocator",
    "cpu_linear": "linear layers",
    "frames_per_pass": "frames per CNN pass",
    "frames_used": "frames per pass used",
    "order": "clip order",
    "n_clips": "clips",
    "num_frames": "frames",
    "batch": "videos per batch",
    "videos_per_s": "videos/s",
    "peak_memory_mb": "peak memory MiB",
    "memory_vs_1_clip": "memory / 1 clip",
}


def measure(setting: dict, args: argparse.Namespace) -> dict:
    """Time one setting (runs in its own process)."""
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    if setting["allocator"] == "keep":
        keep_freed_memory()
    device = torch.device(args.device)
    task = (
        full_size_task(args.image_size, order=setting["order"], cpu_linear=setting["cpu_linear"])
        .to(device)
        .eval()
    )
    frame_input = task.backbone.frame_input
    if setting["frames_per_pass"] != "auto":  # auto: the model's choice for this device
        frame_input.frames_per_chunk = int(setting["frames_per_pass"])
    if setting["precision"] == "int8":
        task = quantize_int8(task, inplace=True)
    batch = video_qa_batch(
        setting["batch"], setting["n_clips"], setting["num_frames"], args.text_len, device
    )

    @torch.inference_mode()
    def answer() -> torch.Tensor:  # eval mode: frames are resized in the CNN's chunks
        with torch.autocast(device.type, torch.bfloat16, enabled=setting["precision"] == "bf16"):
            return task(batch).argmax(-1)

    seconds = median_seconds(answer, repeats=args.repeats, warmup=1, device=device)
    return {
        **setting,
        "image_size": args.image_size,
        "frames_used": frame_input.eval_chunk_size(device),
        "videos_per_s": setting["batch"] / seconds,
        "peak_memory_mb": peak_memory_mb(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-clips", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=["fp32", "bf16", "int8"],
        default=["fp32"],
        help="int8: quantize=int8 (int8 linear layers, bf16 CNN where the CPU has bf16)",
    )
    parser.add_argument(
        "--allocator",
        nargs="+",
        choices=["default", "keep"],
        default=["default"],
        help="keep: glibc keeps freed memory (clipbert.allocator), as train.py/predict.py set",
    )
    parser.add_argument(
        "--frames-per-pass",
        nargs="+",
        default=["auto"],
        help="frames per CNN pass in eval mode (model.eval_frames_per_pass); auto: the "
        "model's default, which a CPU without keep_freed_memory lowers to what glibc reuses",
    )
    parser.add_argument("--order", nargs="+", choices=["batched", "original"], default=["batched"])
    add_cpu_linear_option(parser)
    parser.add_argument("--num-frames", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1, help="videos per forward")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--text-len", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()

    keys = ("allocator", "cpu_linear", "frames_per_pass", "precision", "order", "n_clips")
    combos = itertools.product(
        args.allocator,
        args.cpu_linear,
        args.frames_per_pass,
        args.precision,
        args.order,
        sorted(args.n_clips),
    )
    settings = [
        {**dict(zip(keys, combo, strict=True)), "num_frames": args.num_frames, "batch": args.batch}
        for combo in combos
    ]
    rows = run_isolated(measure, settings, args)
    for row in rows:
        same = ("allocator", "cpu_linear", "frames_per_pass", "precision", "order")
        one_clip = next(
            (r for r in rows if r["n_clips"] == 1 and all(r[k] == row[k] for k in same)), row
        )
        row["memory_vs_1_clip"] = row["peak_memory_mb"] / one_clip["peak_memory_mb"]
    report(rows, COLUMNS, f"Inference at {args.image_size} px", args)


if __name__ == "__main__":
    main()
