"""One full-size ClipBERT training step: time, peak memory, FLOPs and utilization of the GEMM peak.

The step is what a training batch costs after the loader: resize the uint8 frames (320x240, as
MSRVTT's) to ``image_size`` on the device, forward, loss, backward, gradient clipping at 5.0 and
an AdamW step, on MSRVTT-QA's module (ResNet-50 + BERT-base, 1500 answers) with a 20-token
question per video. Model FLOPs (forward + backward) come from ``torch.utils.flop_counter``;
utilization = FLOPs / (step time x the measured peak of a dense matrix product in the same
precision, in the same process: the fastest of 10 products before and 10 after the steps, through
PyTorch's BLAS or, on a CPU, oneDNN, whichever is faster; see ``common.gemm_peak_flops``).

Every combination of the options is one setting, run in a fresh process so that its peak
memory is its own. ``--order original`` runs the clips one after another through the whole
model, as the original does, for comparison with our batched pass; ``--kernels channels_last``
puts the convolution kernels in the frames' layout instead of PyTorch's default; ``--compile on``
sets ``model.compile=true`` (compiling happens in the warm-up steps, outside the timing).

    .venv/bin/python benchmarks/train_step.py --precision fp32 bf16
    .venv/bin/python benchmarks/train_step.py --n-clips 8 --order batched original --image-size 224
    .venv/bin/python benchmarks/train_step.py --precision fp32 bf16 --compile off on --rounds 3
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import torch
from common import (
    add_cpu_linear_option,
    full_size_task,
    gemm_peak_flops,
    markdown_table,
    median_seconds,
    peak_memory_mb,
    report,
    run_isolated,
    video_qa_batch,
)
from torch.utils.flop_counter import FlopCounterMode

from clipbert.allocator import keep_freed_memory
from clipbert.tasks.optimization import clip_grad_norm, parameter_groups

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
COLUMNS = {
    "precision": "precision",
    "order": "clip order",
    "kernels": "kernels",
    "compile": "compiled",
    "cpu_linear": "linear layers",
    "image_size": "image size",
    "n_clips": "clips",
    "num_frames": "frames",
    "batch": "batch",
    "median_s": "median s/step",
    "tflop_per_step": "TFLOP/step",
    "gemm_peak_gflops": "GEMM peak GFLOP/s",
    "peak_library": "peak through",
    "utilization": "utilization",
    "peak_memory_mb": "peak memory MiB",
}


def measure(setting: dict, args: argparse.Namespace) -> dict:
    """Time one setting (runs in its own process)."""
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory:  # as train.py does (keep_freed_memory=true)
        keep_freed_memory()
    device = torch.device(args.device)
    precision = setting["precision"]
    peaks = [gemm_peak_flops(PRECISIONS[precision], device)]
    task = full_size_task(
        setting["image_size"],
        order=setting["order"],
        compile=setting["compile"] == "on",
        cpu_linear=setting["cpu_linear"],
    )
    task = task.to(device).train()
    if setting["kernels"] == "channels_last":  # like the frames; the model's are planar
        task = task.to(memory_format=torch.channels_last)
    groups = parameter_groups(
        task.named_parameters(), cnn_lr=task.cnn_lr, cnn_weight_decay=task.cnn_weight_decay
    )
    optimizer = task.optimizer_factory(groups)
    batch = video_qa_batch(
        setting["batch"], setting["n_clips"], setting["num_frames"], args.text_len, device
    )
    if args.planar_frames:
        batch.frames = batch.frames.contiguous()

    def loss() -> torch.Tensor:  # the model resizes the frames first, as in training
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            return task._loss(task(batch), task.targets(batch))

    def step() -> None:
        loss().backward()
        clip_grad_norm(list(task.parameters()), 5.0)  # as ClipBertTask clips
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = median_seconds(step, repeats=args.steps, warmup=args.warmup, device=device)
    peaks.append(gemm_peak_flops(PRECISIONS[precision], device))  # before and after
    peak, peak_library = max(peaks)
    counter = FlopCounterMode(display=False)
    with counter:
        loss().backward()
    optimizer.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    return {
        **setting,
        "median_s": seconds,
        "tflop_per_step": flops / 1e12,
        "gemm_peak_gflops": peak / 1e9,
        "peak_library": peak_library,
        "utilization": flops / (seconds * peak),
        "peak_memory_mb": peak_memory_mb(device),
    }


def combine(measured: list[dict]) -> dict:
    """One row from a setting's rounds: median time and GEMM peak, the largest memory."""
    row = dict(measured[0])
    row["median_s"] = statistics.median(r["median_s"] for r in measured)
    row["gemm_peak_gflops"] = statistics.median(r["gemm_peak_gflops"] for r in measured)
    row["utilization"] = row["tflop_per_step"] * 1e3 / (row["median_s"] * row["gemm_peak_gflops"])
    row["peak_memory_mb"] = max(r["peak_memory_mb"] for r in measured)
    row["rounds"] = len(measured)
    return row


def settings(args: argparse.Namespace) -> list[dict]:
    keys = (
        "precision",
        "order",
        "kernels",
        "compile",
        "cpu_linear",
        "image_size",
        "n_clips",
        "num_frames",
        "batch",
    )
    values = [getattr(args, key) for key in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"])
    parser.add_argument("--order", nargs="+", choices=["batched", "original"], default=["batched"])
    parser.add_argument(
        "--kernels",
        nargs="+",
        choices=["planar", "channels_last"],
        default=["planar"],
        help="memory layout of the convolution kernels (the model's is planar)",
    )
    parser.add_argument("--image-size", nargs="+", type=int, default=[448])
    parser.add_argument("--n-clips", nargs="+", type=int, default=[1])
    parser.add_argument("--num-frames", nargs="+", type=int, default=[2])
    parser.add_argument("--batch", nargs="+", type=int, default=[2])
    parser.add_argument("--text-len", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="each setting this many times")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    parser.add_argument(
        "--planar-frames",
        action="store_true",
        help="frames in planar (NCHW) memory instead of the decoders' channels-last",
    )
    parser.add_argument(
        "--compile",
        nargs="+",
        choices=["off", "on"],
        default=["off"],
        help="model.compile: torch.compile the CNN, grid encoder and BERT encoder",
    )
    add_cpu_linear_option(parser)
    parser.add_argument(
        "--keep-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="glibc keeps freed memory for reuse, as train.py does by default",
    )
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()

    rounds = []
    for _ in range(args.rounds):  # settings alternate, so drifting machine load hits them all
        rounds.append(run_isolated(measure, settings(args), args))
        print("\n".join(markdown_table(rounds[-1], COLUMNS)[2:]), flush=True)
    rows = [combine(list(measured)) for measured in zip(*rounds, strict=True)]
    report(rows, COLUMNS, "Training step", args)


if __name__ == "__main__":
    main()
