"""BERT's linear layers through PyTorch's BLAS and through oneDNN, by rows: the measurement
behind ``model.cpu_linear`` in ``clipbert/models/cpu_linear.py``.

For each of BERT-base's three layer shapes (768->768, 768->3072, 3072->768) and each row count
(batch x sequence), the fastest of 8 calls is timed for the forward alone (inference) and for
forward and backward (training), through ``F.linear`` (BLAS: MKL on x86) and through oneDNN's
matrix product (``OneDnnProduct``). A ratio above 1 means oneDNN is faster.

    .venv/bin/python benchmarks/cpu_linear.py
    .venv/bin/python benchmarks/cpu_linear.py --rows 69 138 552 1104
    .venv/bin/python benchmarks/cpu_linear.py --rows 96 --shapes 128x256 256x256 512x512

The last two columns time the first forward and backward at each shape, where oneDNN
compiles its kernels for the new row count: the cost behind ``MIN_ONEDNN_WEIGHTS``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import fastest_seconds, report

from clipbert.models.cpu_linear import linear_through_onednn

CPU = torch.device("cpu")
SHAPES = ((768, 768), (768, 3072), (3072, 768))
COLUMNS = {
    "rows": "rows",
    "shape": "in -> out",
    "forward_blas_gflops": "forward BLAS GFLOP/s",
    "forward_onednn_gflops": "forward oneDNN GFLOP/s",
    "forward_ratio": "forward BLAS/oneDNN time",
    "training_blas_gflops": "fwd+bwd BLAS GFLOP/s",
    "training_onednn_gflops": "fwd+bwd oneDNN GFLOP/s",
    "training_ratio": "fwd+bwd BLAS/oneDNN time",
    "first_blas_ms": "first fwd+bwd BLAS ms",
    "first_onednn_ms": "first fwd+bwd oneDNN ms",
}


def measure(rows: int, fan_in: int, fan_out: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, fan_in, generator=generator, requires_grad=True)
    weight = torch.randn(fan_out, fan_in, generator=generator, requires_grad=True)
    bias = torch.randn(fan_out, generator=generator, requires_grad=True)
    grad = torch.randn(rows, fan_out, generator=generator)
    flops = 2 * rows * fan_in * fan_out
    paths = {"blas": F.linear, "onednn": linear_through_onednn}
    row: dict = {"rows": rows, "shape": f"{fan_in} -> {fan_out}"}
    for name, linear in paths.items():

        def train(linear=linear) -> None:
            linear(x, weight, bias).backward(grad)
            x.grad = weight.grad = bias.grad = None

        start = time.perf_counter()  # the first call at this shape: oneDNN compiles its kernels
        train()
        row[f"first_{name}_ms"] = (time.perf_counter() - start) * 1e3
        with torch.no_grad():
            forward = fastest_seconds(
                lambda linear=linear: linear(x, weight, bias), repeats=8, warmup=3, device=CPU
            )
        training = fastest_seconds(train, repeats=8, warmup=3, device=CPU)
        row[f"forward_{name}_gflops"] = flops / forward / 1e9
        row[f"training_{name}_gflops"] = 3 * flops / training / 1e9
    for kind in ("forward", "training"):
        row[f"{kind}_ratio"] = row[f"{kind}_onednn_gflops"] / row[f"{kind}_blas_gflops"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[16, 32, 64, 138, 256, 552, 1104])
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=[f"{i}x{o}" for i, o in SHAPES],
        help="layer shapes as INxOUT (default: BERT-base's three)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [tuple(int(size) for size in shape.split("x")) for shape in args.shapes]
    rows = [measure(n, *shape) for n in args.rows for shape in shapes]
    report(rows, COLUMNS, "Linear layers through BLAS and oneDNN", args)


if __name__ == "__main__":
    main()
