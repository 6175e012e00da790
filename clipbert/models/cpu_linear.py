"""Linear layers through oneDNN on CPUs where PyTorch's BLAS runs at half speed.

PyTorch's x86 builds compute fp32 ``nn.Linear`` with MKL, which takes a slower code path on
AMD processors: on the project's Zen 5 machine a 2048-square product reaches about 225
GFLOP/s through MKL and 460 through oneDNN, the library the CNN's convolutions already use.
PyTorch exposes oneDNN's matrix product as ``torch.ops.mkldnn._linear_pointwise`` (the op its
compiler emits for CPU linear layers) but gives it no gradient, so :class:`OneDnnProduct`
supplies one made of the same op: the input's gradient is ``grad @ W`` and the weight's
``grad^T @ x``, both passed as transposed views, which oneDNN reads without a copy.

Measured with ``benchmarks/cpu_linear.py`` on BERT-base's shapes, each of the three products
is faster through oneDNN than through MKL from 16 rows up (1.3-2.9x), so fp32 CPU calls of
large layers take it, with or without gradients. Parameters, names and checkpoints stay those of
``nn.Linear``: only the class of the layer changes.
"""

from __future__ import annotations

import functools
import math
import platform
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.utils.flop_counter import flop_registry, register_flop_formula

CpuLinear = Literal["auto", "blas", "onednn"]
CPU_LINEAR_CHOICES: tuple[str, ...] = get_args(CpuLinear)
MIN_ONEDNN_WEIGHTS = 512 * 512


def _onednn_product(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for 2-D ``x`` and ``weight``, through oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDnnProduct(torch.autograd.Function):
    """``F.linear`` on 2-D rows through oneDNN, forward and backward."""

    @staticmethod
    def forward(ctx: FunctionCtx, rows: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(rows, weight)
        ctx.has_bias = bias is not None
        return _onednn_product(rows, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        rows, weight = ctx.saved_tensors
        grad = grad.contiguous()
        needs_rows, needs_weight, needs_bias = ctx.needs_input_grad
        grad_rows = _onednn_product(grad, weight.t()) if needs_rows else None
        grad_weight = _onednn_product(grad.t(), rows.t()) if needs_weight else None
        grad_bias = grad.sum(0) if needs_bias and ctx.has_bias else None
        return grad_rows, grad_weight, grad_bias


def linear_through_onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` through oneDNN, for any number of leading dimensions."""
    rows = x.reshape(-1, x.shape[-1])
    out = OneDnnProduct.apply(rows, weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])


def takes_onednn(x: Tensor, weight: Tensor) -> bool:
    """fp32 on a CPU, eager, outside autocast, with at least :data:`MIN_ONEDNN_WEIGHTS`
    weights. Under bf16 autocast PyTorch's own products already run through oneDNN,
    ``torch.compile`` chooses its own kernels, and other dtypes and devices keep ``F.linear``.
    Smaller layers keep it too: oneDNN costs more fixed time a call and compiles kernels for
    each new row count, and on layers of 128x256 and 256x256 weights it measured 0.5-0.7x of
    MKL's speed at 16 rows (``benchmarks/cpu_linear.py --shapes``), while a BERT-base layer
    (0.6-2.4 M weights) is 1.3-2.9x faster from 16 rows up."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.numel() >= MIN_ONEDNN_WEIGHTS
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


class OneDnnLinear(nn.Linear):
    """An ``nn.Linear`` whose fp32 CPU calls take oneDNN (:func:`takes_onednn`)."""

    def forward(self, x: Tensor) -> Tensor:
        if takes_onednn(x, self.weight):
            return linear_through_onednn(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def onednn_products_available() -> bool:
    """This PyTorch build has oneDNN and its linear op (CPU builds for x86 and ARM do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _product_flops(x_shape: torch.Size, weight_shape: torch.Size, *args, **kwargs) -> int:
    """2 x rows x in x out, as ``FlopCounterMode`` counts ``mm``."""
    return 2 * math.prod(x_shape[:-1]) * x_shape[-1] * weight_shape[0]


if onednn_products_available() and torch.ops.mkldnn._linear_pointwise not in flop_registry:
    # so FLOP counts (benchmarks' utilization, users' own profiling) include these products
    register_flop_formula(torch.ops.mkldnn._linear_pointwise)(_product_flops)


@functools.cache
def blas_is_slow_here() -> bool:
    """MKL's fast paths are for Intel processors: on AMD x86 CPUs PyTorch's BLAS products run
    at about half of oneDNN's rate (measured on Zen 5). Elsewhere ``auto`` keeps BLAS."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if not onednn_products_available():
        return False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("vendor_id") and "AuthenticAMD" in line for line in cpuinfo)
    except OSError:
        return False


def route_cpu_linears(module: nn.Module, mode: CpuLinear) -> int:
    """Make ``module``'s linear layers use oneDNN on the CPU (``onednn``, or ``auto`` where
    BLAS is slow here) or plain BLAS (``blas``), in place; returns how many layers changed.
    Only the class changes, so parameters, state dicts and devices stay as they are."""
    if mode not in CPU_LINEAR_CHOICES:
        raise ValueError(f"model.cpu_linear must be one of {CPU_LINEAR_CHOICES}, got {mode!r}")
    if mode == "onednn" and not onednn_products_available():
        raise ValueError(
            "model.cpu_linear=onednn needs a PyTorch built with oneDNN "
            "(torch.backends.mkldnn.is_available()); use model.cpu_linear=auto or blas"
        )
    onednn = mode == "onednn" or (mode == "auto" and blas_is_slow_here())
    target, source = (OneDnnLinear, nn.Linear) if onednn else (nn.Linear, OneDnnLinear)
    changed = 0
    for layer in module.modules():
        if type(layer) is source:
            layer.__class__ = target
            changed += 1
    return changed
