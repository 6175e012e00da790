"""A faster CPU inference model: ``quantize="int8"``.

BERT's and the heads' linear layers become dynamically quantized int8 layers (int8 weights,
each batch's activations quantized on the fly: PyTorch's fbgemm/oneDNN int8 GEMMs), which is
where a 16-clip question spends much of its time. The CNN, whose convolutions dynamic
quantization does not cover, runs in bf16 where the CPU computes bf16 natively (AVX-512 BF16,
AMX) and stays fp32 elsewhere, where bf16 convolutions are emulated and slower. Everything
else (frame transform, grid encoder input, embeddings, norms, softmax) stays fp32.

Inference only: the quantized layers have no gradients. ``benchmarks/quantization.py`` checks
the agreement with fp32 on a trained run (the demo: 99.8% of the answers unchanged).
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

from clipbert.models.cpu_linear import route_cpu_linears

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("int8",)


class ToFloat(nn.Module):
    """Back to fp32 after the bf16 CNN and grid encoder, for the embeddings and BERT."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (else it emulates them)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_quantize(mode: str | None, device: torch.device | str, precision: str) -> None:
    """Refuse a mode we do not have, quantization off the CPU (GPUs have bf16 autocast), or
    beside an autocast precision (the quantized model sets its own dtypes)."""
    if mode is None:
        return
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES} or null, got '{mode}'")
    if torch.device(device).type != "cpu":
        raise ValueError(
            f"quantize={mode} is a CPU inference path; on a GPU use precision=bf16-mixed instead"
        )
    if precision != "32-true":
        raise ValueError(f"quantize={mode} runs its own dtypes: give precision=32-true")


def quantize_int8(
    module: nn.Module, cnn_bf16: bool | None = None, *, inplace: bool = False
) -> nn.Module:
    """The eval-mode task ``module`` with int8 dynamic linear layers and, when ``cnn_bf16``
    (default: where the CPU has native bf16), a bf16 CNN and grid encoder: a copy, or with
    ``inplace`` the module itself converted (no second model in memory)."""
    quantized = (module if inplace else copy.deepcopy(module)).eval()
    backbone = quantized.backbone
    route_cpu_linears(quantized, "blas")  # quantize_dynamic swaps plain nn.Linear only
    with warnings.catch_warnings():  # torch.ao's quantized tensors are marked for deprecation
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.ao.quantization.quantize_dynamic(
            quantized, {nn.Linear}, dtype=torch.qint8, inplace=True
        )
    use_bf16 = cpu_has_native_bf16() if cnn_bf16 is None else cnn_bf16
    if use_bf16:  # the backbone feeds the CNN its weights' dtype; the grid encoder follows it
        backbone.cnn.to(torch.bfloat16)
        backbone.grid_encoder = nn.Sequential(*backbone.grid_encoder.to(torch.bfloat16), ToFloat())
    log.info(
        "quantize=int8: BERT and head linear layers int8 (dynamic), CNN in %s",
        "bf16" if use_bf16 else "fp32 (this CPU has no native bf16)",
    )
    return quantized
