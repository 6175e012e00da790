"""Linear layers through oneDNN on CPUs where PyTorch's BLAS runs at half speed.

PyTorch's x86 builds compute fp32 ``nn.Linear`` with MKL, which takes a slower code path on
AMD processors: on the project's Zen 5 machine a 2048-square product reaches about 225
GFLOP/s through MKL and 460 through oneDNN, the library the CNN's convolutions already use.
A linear layer is a 1x1 convolution over a channels-last image whose pixels are the input
rows, so it can run through oneDNN with no copy and with autograd, and keep its parameters,
names and checkpoints. Which is faster depends on the rows (measured with
``benchmarks/cpu_linear.py``): oneDNN wins from 32 rows without gradients and from 256 with
them (its weight gradient is the slower part for few rows). So calls without gradients always
take oneDNN, which keeps evaluation's numbers independent of how the batches split (below 32
rows oneDNN is 0.75-1.0x of BLAS, on calls of microseconds), and calls with gradients take it
from 256 rows.
"""

from __future__ import annotations

import functools
import platform
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CpuLinear = Literal["auto", "blas", "onednn"]
CPU_LINEAR_CHOICES: tuple[str, ...] = get_args(CpuLinear)
MIN_ROWS_TRAINING = 256


def linear_through_onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear`` as a 1x1 convolution: the rows of ``x`` become the pixels of a
    channels-last (1, in, 1, rows) image, so both views are free and the result is the
    contiguous (rows, out) matrix."""
    rows = x.reshape(-1, x.shape[-1])
    image = rows.view(1, 1, *rows.shape).permute(0, 3, 1, 2)
    out = F.conv2d(image, weight[:, :, None, None], bias)
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


def onednn_pays(x: Tensor, weight: Tensor) -> bool:
    """Whether this call takes oneDNN: fp32 on a CPU, and no gradients or enough rows for
    them. Under bf16 autocast PyTorch's own products already run through oneDNN."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
        return False
    if not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return True
    return x.numel() // max(x.shape[-1], 1) >= MIN_ROWS_TRAINING


class OneDnnLinear(nn.Linear):
    """An ``nn.Linear`` whose fp32 CPU calls take oneDNN where it measured faster
    (:func:`onednn_pays`) and ``F.linear`` otherwise."""

    def forward(self, x: Tensor) -> Tensor:
        if onednn_pays(x, self.weight):
            return linear_through_onednn(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


@functools.cache
def blas_is_slow_here() -> bool:
    """MKL's fast paths are for Intel processors: on AMD x86 CPUs PyTorch's BLAS products run
    at about half of oneDNN's rate (measured on Zen 5). Elsewhere ``auto`` keeps BLAS."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if not torch.backends.mkldnn.is_available():
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
    onednn = mode == "onednn" or (mode == "auto" and blas_is_slow_here())
    target, source = (OneDnnLinear, nn.Linear) if onednn else (nn.Linear, OneDnnLinear)
    changed = 0
    for layer in module.modules():
        if type(layer) is source:
            layer.__class__ = target
            changed += 1
    return changed
