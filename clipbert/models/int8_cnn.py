"""The CNN in static int8 for CPU inference, calibrated on the first frames it sees.

PyTorch quantizes convolutions only statically: the activations' int8 scales must be known
before the first int8 call. So :class:`CalibratingInt8CNN` answers its first
``calibration_frames`` frames in fp32 while observers record each activation's range, then
converts itself to int8 (PyTorch's x86 backend: per-channel int8 weights, uint8 activations,
the ReLUs and residual adds fused) and answers every later frame in int8. Predicting a split,
the calibration frames are those of its first videos, in the data's order, so results are
reproducible (with several processes, each calibrates on its own first videos); predicting
one video at a time, the first video calibrates.

Measured on the Zen 5 VM (AVX-512 VNNI), ResNet-50 at 448 px: int8 convolutions run about
twice as fast as bf16 ones (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from clipbert.models.resnet import Bottleneck, ResNet, folded_conv, folds_into_conv


def folded_conv_module(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` (with bias) computing ``norm(conv(x))``: the form PyTorch's
    quantization recognises and fuses with a following ReLU."""
    if not folds_into_conv(norm):
        raise ValueError(
            f"{type(norm).__name__} in training mode cannot be folded: call .eval() first"
        )
    weight, bias = folded_conv(conv, norm)
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    )
    with torch.no_grad():
        folded.weight.copy_(weight)
        folded.bias.copy_(bias)
    return folded


class FoldedBottleneck(nn.Module):
    """A :class:`Bottleneck` with its norms folded into its convolutions."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        self.conv1 = folded_conv_module(block.conv1, block.bn1)
        self.relu1 = nn.ReLU()
        self.conv2 = folded_conv_module(block.conv2, block.bn2)
        self.relu2 = nn.ReLU()
        self.conv3 = folded_conv_module(block.conv3, block.bn3)
        self.relu3 = nn.ReLU()
        self.downsample = (
            None if block.downsample is None else folded_conv_module(*block.downsample)
        )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.relu3(self.conv3(out) + shortcut)


class FoldedResNet(nn.Module):
    """A :class:`ResNet` (eval mode) as plain convolutions, ReLUs and adds: the same function,
    in a form ``torch.ao.quantization``'s FX tracer quantizes."""

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.conv1 = folded_conv_module(resnet.conv1, resnet.bn1)
        self.relu = nn.ReLU()
        self.maxpool = copy.deepcopy(resnet.maxpool)
        stages = (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        self.blocks = nn.Sequential(
            *(FoldedBottleneck(block) for stage in stages for block in stage)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.maxpool(self.relu(self.conv1(x))))


class CalibratingInt8CNN(nn.Module):
    """Stands in for the backbone's CNN: fp32 with activation observers for the first
    ``calibration_frames`` frames, int8 from then on (see the module docstring). With
    ``grid_encoder``, that follows the CNN inside the int8 graph (it is the heaviest single
    convolution, a 3x3 over 2048 channels; the backbone's own then becomes an identity)."""

    input_dtype = torch.float32  # the backbone casts the frames to this

    def __init__(
        self, resnet: ResNet, calibration_frames: int, grid_encoder: nn.Module | None = None
    ) -> None:
        super().__init__()
        if calibration_frames < 1:
            raise ValueError(f"quantize_calibration_frames must be >= 1, got {calibration_frames}")
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        example = torch.zeros(1, 3, 64, 64)
        with quiet_torch_ao():
            network = FoldedResNet(resnet)
            if grid_encoder is not None:
                network = nn.Sequential(network, copy.deepcopy(grid_encoder))
            self.observed = prepare_fx(
                network.eval(),
                get_default_qconfig_mapping("x86"),
                example_inputs=(example,),
            )
        self.quantized: nn.Module | None = None
        self.calibration_frames = calibration_frames
        self.frames_seen = 0

    @property
    def calibrated(self) -> bool:
        return self.quantized is not None

    def forward(self, x: Tensor) -> Tensor:
        if self.quantized is not None:
            return self.quantized(x)
        out = self.observed(x)
        self.frames_seen += x.shape[0]
        if self.frames_seen >= self.calibration_frames:
            self._convert()
        return out

    def _convert(self) -> None:
        from torch.ao.quantization.quantize_fx import convert_fx

        with quiet_torch_ao():
            self.quantized = convert_fx(self.observed)
        self.observed = None


@contextlib.contextmanager
def quiet_torch_ao() -> Iterator[None]:
    """torch.ao's eager and FX quantization are marked for deprecation in favour of the
    compiler-based flow; their warnings say nothing a user can act on here."""
    with warnings.catch_warnings():
        for category in (UserWarning, DeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        yield
