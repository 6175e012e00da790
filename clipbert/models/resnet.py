"""ResNet with detectron2 semantics (the grid-feat R50 ClipBERT uses) and torchvision-style names.

What differs from ``torchvision.models.resnet50`` and why it matters:

* every norm is a frozen BatchNorm (detectron2 ``FrozenBN``, eps 1e-5): the grid-feat weights
  were trained that way, and batch statistics are never updated;
* the block stride sits in the first 1x1 conv (``stride_in_1x1=True``, MSRA/Caffe2 style), not in
  the 3x3 conv; loading the weights into a torchvision ResNet silently gives other features;
* ``freeze_at`` turns off gradients of the stem and the first stages, as detectron2 does.

``norm="batch_norm"`` swaps in trainable BatchNorm for networks trained from scratch (the demo):
without any normalisation a randomly initialised ResNet barely learns. It is off by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

_BN_EPS = 1e-5
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "frozen_bn": lambda channels: FrozenBatchNorm2d(channels, eps=_BN_EPS),
    "batch_norm": lambda channels: nn.BatchNorm2d(channels, eps=_BN_EPS),
}


def norm_layer(name: str) -> Callable[[int], nn.Module]:
    if name not in NORMS:
        raise ValueError(f"model.cnn.norm must be one of {sorted(NORMS)}, got '{name}'")
    return NORMS[name]


def folds_into_conv(norm: nn.Module) -> bool:
    """Whether ``norm`` is a fixed per-channel affine map here: a frozen BatchNorm always, a
    trainable one in eval mode (its running statistics)."""
    if isinstance(norm, FrozenBatchNorm2d):
        return True
    return (
        isinstance(norm, nn.BatchNorm2d)
        and not norm.training
        and norm.affine
        and norm.running_var is not None
    )


def folded_conv(conv: nn.Conv2d, norm: nn.Module) -> tuple[Tensor, Tensor]:
    """The weight and bias of the one convolution that computes ``norm(conv(x))``."""
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    shift = norm.bias - norm.running_mean * scale
    return conv.weight * scale.view(-1, 1, 1, 1), shift


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(conv(x))``. A frozen BatchNorm (or one in eval mode) is folded into the
    convolution's weight and bias: the same function (and gradients), without two more
    passes over the activations, and under bf16 autocast the activations stay bf16 (the fp32
    buffers would otherwise promote every block's output to fp32)."""
    if not folds_into_conv(norm):
        return norm(conv(x))
    weight, bias = folded_conv(conv, norm)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block; ``downsample`` exists only where the shape changes."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        stride: int = 1,
        stride_in_1x1: bool = True,
        norm: str = "frozen_bn",
    ) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv(in_channels, width, 1, stride_1x1)
        self.bn1 = make_norm(width)
        self.conv2 = _conv(width, width, 3, stride_3x3)
        self.bn2 = make_norm(width)
        self.conv3 = _conv(width, out_channels, 1)
        self.bn3 = make_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                _conv(in_channels, out_channels, 1, stride), make_norm(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else conv_norm(*self.downsample, x)
        out = self.relu(conv_norm(self.conv1, self.bn1, x))
        out = self.relu(conv_norm(self.conv2, self.bn2, out))
        out = conv_norm(self.conv3, self.bn3, out)
        out += shortcut  # in place: the add's backward needs neither operand
        return self.relu(out)


def _stage(
    in_channels: int,
    width: int,
    out_channels: int,
    num_blocks: int,
    stride: int,
    stride_in_1x1: bool,
    norm: str,
) -> nn.Sequential:
    """One stage; only block 0 changes resolution or channel count."""
    first = Bottleneck(in_channels, width, out_channels, stride, stride_in_1x1, norm)
    rest = [
        Bottleneck(out_channels, width, out_channels, 1, stride_in_1x1, norm)
        for _ in range(num_blocks - 1)
    ]
    return nn.Sequential(first, *rest)


class ResNet(nn.Module):
    """Bottleneck ResNet up to the last stage (res5, total stride 32, no dilation).

    ``layers``/``stem_width``/``width``/``expansion`` set depth and width, so tests and demos can
    use a tiny network; the defaults are ResNet-50. ``freeze_at`` counts stages like detectron2:
    1 freezes the stem, 2 also ``layer1`` (the grid-feat default), and so on.
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        stem_width: int = 64,
        width: int = 64,
        expansion: int = 4,
        stride_in_1x1: bool = True,
        freeze_at: int = 2,
        norm: str = "frozen_bn",
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"expected 4 stages, got layers={list(layers)}")
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(norm)(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = [width * 2**i for i in range(4)]
        outs = [w * expansion for w in widths]
        ins = [stem_width, *outs[:3]]
        stages = [
            _stage(ins[i], widths[i], outs[i], layers[i], 1 if i == 0 else 2, stride_in_1x1, norm)
            for i in range(4)
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self._out_channels = outs[-1]
        self._init_convs()
        self._freeze(freeze_at)

    @property
    def out_channels(self) -> int:
        return self._out_channels

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype the frames must have: the weights' (bf16 in ``quantize=int8``'s bf16 CNN)."""
        return self.conv1.weight.dtype

    def _init_convs(self) -> None:
        # detectron2's c2_msra_fill; pretrained weights overwrite it, but a fresh model starts
        # where the original's does.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _freeze(self, freeze_at: int) -> None:
        stem = nn.ModuleList([self.conv1, self.bn1])
        stages = [stem, self.layer1, self.layer2, self.layer3, self.layer4]
        for stage in stages[:freeze_at]:
            stage.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet50() -> ResNet:
    """The grid-feat ResNet-50 ClipBERT uses (stride in 1x1, FrozenBN, stem+layer1 frozen)."""
    return ResNet()
