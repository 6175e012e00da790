"""A faster CPU inference model: ``quantize="int8"``.

BERT's and the heads' linear layers become dynamically quantized int8 layers (int8 weights,
each batch's activations quantized on the fly: PyTorch's fbgemm/oneDNN int8 GEMMs). The CNN
and the grid encoder, which dynamic quantization does not cover, are quantized statically
where PyTorch has its x86 int8 backend (:class:`~clipbert.models.int8_cnn.CalibratingInt8CNN`:
calibrated on the first frames it sees). ``quantize_cnn="bf16"`` runs them in bf16 instead
(native on AVX-512 BF16 and AMX CPUs, emulated and slower elsewhere) and ``"fp32"`` leaves
them. Everything else (frame transform, embeddings, norms, softmax) stays fp32.

Inference only: the quantized layers have no gradients. ``benchmarks/quantization.py`` checks
the agreement with fp32 on a trained run (the demo).
"""

from __future__ import annotations

import copy
import logging
from typing import Literal, get_args

import torch
from torch import nn

from clipbert.models.cpu_linear import route_cpu_linears
from clipbert.models.int8_cnn import CalibratingInt8CNN, quiet_torch_ao

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("int8",)
CnnPrecision = Literal["auto", "int8", "bf16", "fp32"]
CNN_PRECISIONS: tuple[str, ...] = get_args(CnnPrecision)
DEFAULT_CALIBRATION_FRAMES = 32


class ToFloat(nn.Module):
    """Back to fp32 after the bf16 CNN and grid encoder, for the embeddings and BERT."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (else it emulates them)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def has_x86_int8() -> bool:
    """Whether PyTorch's int8 kernels run on its x86 backend (fbgemm + oneDNN): built in, and
    the active engine (the default where it is built in)."""
    return torch.backends.quantized.engine in ("x86", "fbgemm", "onednn")


def cnn_precision(choice: str) -> str:
    """``auto``: int8 where the x86 backend exists, else bf16 where it is native, else fp32."""
    if choice not in CNN_PRECISIONS:
        raise ValueError(f"quantize_cnn must be one of {CNN_PRECISIONS}, got '{choice}'")
    if choice == "int8" and not has_x86_int8():
        raise ValueError(
            "quantize_cnn=int8 needs PyTorch's x86 int8 backend "
            f"(torch.backends.quantized.engine is '{torch.backends.quantized.engine}'); "
            "use quantize_cnn=bf16 or fp32"
        )
    if choice != "auto":
        return choice
    if has_x86_int8():
        return "int8"
    return "bf16" if cpu_has_native_bf16() else "fp32"


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
    module: nn.Module,
    cnn: CnnPrecision = "auto",
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES,
    *,
    inplace: bool = False,
) -> nn.Module:
    """The eval-mode task ``module`` with int8 dynamic linear layers and the CNN in ``cnn``
    precision (:func:`cnn_precision`; an int8 CNN calibrates on its first
    ``calibration_frames`` frames): a copy, or with ``inplace`` the module itself converted
    (no second model in memory)."""
    precision = cnn_precision(cnn)
    quantized = (module if inplace else copy.deepcopy(module)).eval()
    backbone = quantized.backbone
    if precision == "int8":  # built first: a bad value is refused before anything changes
        int8_cnn = CalibratingInt8CNN(backbone.cnn, calibration_frames, backbone.grid_encoder)
    route_cpu_linears(quantized, "blas")  # quantize_dynamic swaps plain nn.Linear only
    with quiet_torch_ao():
        torch.ao.quantization.quantize_dynamic(
            quantized, {nn.Linear}, dtype=torch.qint8, inplace=True
        )
    if precision == "int8":
        backbone.cnn, backbone.grid_encoder = int8_cnn, nn.Identity()
    elif precision == "bf16":  # the backbone feeds the CNN its dtype; the grid encoder follows
        backbone.cnn.to(torch.bfloat16)
        backbone.grid_encoder = nn.Sequential(*backbone.grid_encoder.to(torch.bfloat16), ToFloat())
    log.info(
        "quantize=int8: BERT and head linear layers int8 (dynamic), CNN in %s%s",
        precision,
        f" (calibrated on the first {calibration_frames} frames)" if precision == "int8" else "",
    )
    return quantized
