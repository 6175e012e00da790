"""What the model benchmarks share: the full-size model and its inputs, the machine's GEMM
peak, a description of the machine, and the table they print and record in RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from clipbert.data.batches import QABatch
from clipbert.models.backbone import ClipBertBackbone
from clipbert.models.cpu_linear import CPU_LINEAR_CHOICES, linear_through_onednn
from clipbert.runs.build import build_module
from clipbert.runs.configs import CONFIG_DIR
from clipbert.tasks.base import ClipBertTask

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
VOCAB_SIZE = 30522  # bert-base-uncased
SOURCE_SIZE = (240, 320)  # MSRVTT's frame size; the model resizes to image_size as in training


class OneClipAtATime(ClipBertBackbone):
    """The original's control flow: one whole forward (CNN, then BERT) per clip, the clips one
    after another. The outputs are the batched pass's; only speed and memory differ, which is
    what ``--order original`` compares in the same run."""

    def forward(self, frames, input_ids, attention_mask, visual_index=None):
        clips = frames.split(1, dim=1)  # the benchmarks' frames are one stacked tensor
        return torch.cat(
            [
                super(OneClipAtATime, self).forward(c, input_ids, attention_mask, visual_index)
                for c in clips
            ],
            dim=1,
        )


def full_size_task(
    image_size: int = 448,
    task: str = "msrvtt_qa",
    compile: bool = False,
    order: str = "batched",
    cpu_linear: str = "auto",
) -> ClipBertTask:
    """The module ``train.py task=...`` composes (ResNet-50 + BERT-base; for MSRVTT-QA 1500
    answers and lse over clips), randomly initialised: speed does not depend on weights.
    ``order="original"`` runs the clips one after another (:class:`OneClipAtATime`)."""
    overrides = [f"task={task}", f"model.compile={compile}", f"model.cpu_linear={cpu_linear}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("train", overrides=overrides)
    answers = [f"answer_{i}" for i in range(1500)] if "ans2label" in cfg.task.datamodule else None
    module = build_module(
        cfg.model,
        cfg.task.module,
        image_size=image_size,
        vocab_size=VOCAB_SIZE,
        answer_vocabulary=answers,
    )
    if order == "original":
        module.backbone.__class__ = OneClipAtATime  # the same weights, the original's loop
    return module


def video_qa_batch(
    batch: int, n_clips: int, num_frames: int, text_len: int, device: torch.device
) -> QABatch:
    """One question per video, uint8 frames laid out as the decoders give them (channels-last),
    at MSRVTT's 320x240; seeded, so every setting sees the same numbers."""
    generator = torch.Generator().manual_seed(0)
    height, width = SOURCE_SIZE
    frames = torch.randint(
        0, 256, (batch, n_clips, num_frames, height, width, 3), generator=generator
    ).to(torch.uint8)
    return QABatch(
        frames=frames.movedim(-1, -3).to(device),
        input_ids=torch.randint(1000, VOCAB_SIZE, (batch, text_len), generator=generator).to(
            device
        ),
        attention_mask=torch.ones(batch, text_len, dtype=torch.long, device=device),
        visual_index=torch.arange(batch, device=device),
        labels=torch.randint(0, 1500, (batch,), generator=generator).to(device),
    )


def run_isolated(measure: Callable[..., dict], settings: Sequence[dict], *args: object) -> list:
    """``measure(setting, *args)`` for each setting, each in a fresh process (so that peak
    memory is the setting's own)."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for setting in settings:
        with context.Pool(1) as pool:
            rows.append(pool.apply(measure, (setting, *args)))
    return rows


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_seconds(run: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``run``, the device's queued work included."""
    synchronize(device)
    began = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - began


def median_seconds(
    run: Callable[[], object], repeats: int, warmup: int, device: torch.device
) -> float:
    """Median wall time of ``run`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    return statistics.median(timed_seconds(run, device) for _ in range(repeats))


def fastest_seconds(
    run: Callable[[], object], repeats: int, warmup: int, device: torch.device
) -> float:
    """Shortest wall time of ``run`` over ``repeats`` calls after ``warmup`` untimed ones: for
    kernels, where contention on a shared machine only ever adds time."""
    for _ in range(warmup):
        run()
    return min(timed_seconds(run, device) for _ in range(repeats))


def add_cpu_linear_option(parser: argparse.ArgumentParser) -> None:
    """``--cpu-linear``: the settings of ``model.cpu_linear`` to compare."""
    parser.add_argument(
        "--cpu-linear",
        nargs="+",
        choices=CPU_LINEAR_CHOICES,
        default=["auto"],
        help="model.cpu_linear: fp32 linear layers through BLAS, oneDNN, or auto (oneDNN on AMD)",
    )


def gemm_peak_flops(dtype: torch.dtype, device: torch.device) -> tuple[float, str]:
    """FLOP/s of a dense square matrix product in ``dtype`` (2048 on a CPU, 8192 on a GPU,
    which 2048 does not fill), and the library that reached it: the machine's practical
    compute peak, measured in the same process as the model it is compared with.

    On a CPU the product runs twice, through PyTorch's BLAS (``a @ b``, MKL) and through
    oneDNN (its matrix product, from the library the CNN's convolutions use),
    and the faster counts: MKL takes a slower code path on AMD processors (about half of
    oneDNN's rate on Zen 5), and a peak below what the convolutions reach would put
    utilization above 1. The fastest of 10 products counts, so a moment of contention on a
    shared machine does not lower the peak (and inflate utilization)."""
    size = 8192 if device.type == "cuda" else 2048
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device, dtype) for _ in range(2))
    products: dict[str, Callable[[], object]] = {"BLAS": lambda: a @ b}
    if device.type == "cpu":  # a @ b as a linear layer with weight b^T, through oneDNN
        weight = b.t().contiguous()
        products["oneDNN"] = lambda: linear_through_onednn(a, weight, None)
    rates = {
        library: 2 * size**3 / fastest_seconds(product, repeats=10, warmup=3, device=device)
        for library, product in products.items()
    }
    library = max(rates, key=rates.__getitem__)
    return rates[library], library


def peak_memory_mb(device: torch.device) -> float:
    """The process's peak resident set (CPU) or peak allocated device memory (GPU), MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def machine(device: torch.device) -> str:
    """One line naming the hardware and the software versions the figures depend on."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "CPU",
        )
        where = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{where}; torch {torch.__version__}, Python {platform.python_version()}"


def markdown_table(rows: Sequence[dict], columns: dict[str, str]) -> list[str]:
    """``columns`` maps row keys to headers; floats print with 3 significant digits."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.0f}" if abs(value) >= 100 else f"{value:#.3g}"
        return str(value)

    lines = ["| " + " | ".join(columns.values()) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row[key]) for key in columns) + " |" for row in rows]
    return lines


def report(rows: list[dict], columns: dict[str, str], title: str, args: object) -> None:
    """Print the rows as a table under the machine's description; write them to ``--json``;
    append them to RESULTS.md unless ``--no-record``. Scripts without ``--device`` ran on the
    CPU; ``--json`` is optional."""
    device = torch.device(getattr(args, "device", "cpu"))
    table = markdown_table(rows, columns)
    print("\n" + machine(device) + "\n" + "\n".join(table))
    if getattr(args, "json", None):
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if not args.no_record:
        record(title, device, table)


def record(title: str, device: torch.device, table: list[str], path: Path = RESULTS) -> None:
    """Append the table to RESULTS.md with the date, the machine and the command."""
    command = " ".join(shlex.quote(arg) for arg in [Path(sys.executable).name, *sys.argv])
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = [
        f"\n### {title} ({stamp})\n",
        f"Machine: {machine(device)}. Command: `{command}`\n",
        *table,
    ]
    with path.open("a") as results:
        results.write("\n".join(section) + "\n")
    print(f"appended to {path}")
