"""SE-ResNet-50 as converted from the VGGFace2 Caffe model ("senet50_ft"), timm style.

The network follows the Caffe original exactly (see ``shared/PAPER.md``):

* stem: 7x7/2 conv (no bias), BN, ReLU, 3x3/2 max-pool in **ceil mode**;
* bottleneck blocks with the **Caffe-style stride**: the stride sits on the first 1x1
  ("reduce") conv and on the 1x1 projection shortcut, the 3x3 conv has stride 1;
* squeeze-excitation (reduction 16, 1x1 convs with bias) on the output of the last BN of
  the residual branch, *before* the shortcut is added;
* BatchNorm eps 1e-5, convs without bias except the SE convs;
* global average pool (equal to the original 7x7 pool at 224 px, and still defined for
  smaller inputs) to a 2048-d feature, then a linear classifier.

The model takes *preprocessed* tensors (BGR, 0..255 minus the dataset mean), see
:mod:`mafer.models.preprocess`.

Parameter names are torchvision-like and map one to one onto the names of the MMdnn
conversion used by the MAFER authors' checkpoints and of the VGGFace2 pickle; the
mapping lives right here (:func:`internal_to_mmdnn`, :func:`internal_to_vggface2`) and is
applied by :mod:`mafer.models.weights`.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from mafer.errors import MaferError

__all__ = ["SENet", "create_model", "arch_names", "unwrap_model", "internal_to_mmdnn", "internal_to_vggface2"]

BN_EPS = 1e-5
SE_REDUCTION = 16
EXPANSION = 4


class SqueezeExcite(nn.Module):
    """Channel gate: global average -> 1x1 conv down -> ReLU -> 1x1 conv up -> sigmoid."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=True)
        self.up = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = torch.sigmoid(self.up(torch.relu(self.down(s))))
        return x * s


class Bottleneck(nn.Module):
    """SE bottleneck with the stride on the first 1x1 conv (Caffe / VGGFace2 layout)."""

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.se = SqueezeExcite(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + shortcut)


class SENet(nn.Module):
    """SE-ResNet backbone with a linear classifier.

    ``model(x)`` returns logits, ``model.forward_features(x)`` the pooled feature
    ``[N, num_features]`` and ``model.forward_head(f)`` the logits of a feature.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 8631,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("SENet needs four stages: len(layers) == len(widths) == 4")
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        in_channels = widths[0]
        for i, (depth, width) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(depth):
                blocks.append(Bottleneck(in_channels, width, stride if b == 0 else 1))
                in_channels = width * EXPANSION
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = in_channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs."""
        weight = self.classifier.weight
        self.classifier = nn.Linear(self.num_features, num_classes).to(device=weight.device, dtype=weight.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled deep feature ``[N, num_features]`` of a preprocessed batch."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.global_pool(x), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of pooled features."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_ARCH_ARGS: dict[str, dict] = {
    # The VGGFace2 / MAFER backbone.
    "senet50": dict(layers=(3, 4, 6, 3), widths=(64, 128, 256, 512)),
    # Same family, small enough to train on 2 CPU cores at 48-64 px (512-d feature).
    "senet_tiny": dict(layers=(1, 1, 1, 1), widths=(16, 32, 64, 128)),
}


def arch_names() -> list[str]:
    """Architecture names accepted by :func:`create_model` (timm's term: ``arch``)."""
    return list(_ARCH_ARGS)


def create_model(arch: str, num_classes: int) -> SENet:
    """Build the architecture ``arch``: ``"senet50"`` (the paper's backbone) or ``"senet_tiny"``,
    with ``num_classes`` outputs (like timm's ``create_model``, which takes the architecture name).

    Raises MaferError on an unknown architecture, ValueError when ``num_classes < 1``.
    """
    if arch not in _ARCH_ARGS:
        raise MaferError(f"unknown architecture {arch!r}; expected one of {arch_names()}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return SENet(num_classes=num_classes, **_ARCH_ARGS[arch])


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside DataParallel/DistributedDataParallel/``torch.compile`` wrappers."""
    while True:
        for attr in ("module", "_orig_mod"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return model


# ----------------------------------------------------------------------------------------
# Name mapping to the converted checkpoints.
#
#   this model                      MMdnn (MAFER checkpoints)         VGGFace2 pickle
#   conv1 / bn1                     conv1_7x7_s2 / conv1_7x7_s2_bn    conv1 / bn1
#   layer{L}.{i}.conv1 / bn1        conv{L+1}_{i+1}_1x1_reduce[_bn]   layer{L}.{i}.conv1 / bn1
#   layer{L}.{i}.conv2 / bn2        conv{L+1}_{i+1}_3x3[_bn]          layer{L}.{i}.conv2 / bn2
#   layer{L}.{i}.conv3 / bn3        conv{L+1}_{i+1}_1x1_increase[_bn] layer{L}.{i}.conv3 / bn3
#   layer{L}.{i}.se.down / se.up    conv{L+1}_{i+1}_1x1_down / _up    layer{L}.{i}.conv4 / conv5
#   layer{L}.0.downsample.0 / .1    conv{L+1}_1_1x1_proj[_bn]         layer{L}.0.downsample.0 / .1
#   classifier                      classifier_1                      fc
#
# L is 1-based here (layer1..layer4 = Caffe stages conv2..conv5), i is 0-based.
# ----------------------------------------------------------------------------------------
_BLOCK_KEY = re.compile(r"layer(\d)\.(\d+)\.(.+)\.(\w+)")

_MMDNN_BLOCK_PART = {
    "conv1": "1x1_reduce",
    "bn1": "1x1_reduce_bn",
    "conv2": "3x3",
    "bn2": "3x3_bn",
    "conv3": "1x1_increase",
    "bn3": "1x1_increase_bn",
    "se.down": "1x1_down",
    "se.up": "1x1_up",
    "downsample.0": "1x1_proj",
    "downsample.1": "1x1_proj_bn",
}
_MMDNN_TOP = {"conv1": "conv1_7x7_s2", "bn1": "conv1_7x7_s2_bn", "classifier": "classifier_1"}

_VGGFACE2_BLOCK_PART = {"se.down": "conv4", "se.up": "conv5"}
_VGGFACE2_TOP = {"classifier": "fc"}


def _split_key(key: str) -> tuple[str, str]:
    module, _, attr = key.rpartition(".")
    return module, attr


def internal_to_mmdnn(key: str) -> str:
    """State-dict key of this model -> key in the MMdnn conversion (MAFER checkpoints)."""
    block = _BLOCK_KEY.fullmatch(key)
    if block:
        layer, index, part, attr = block.groups()
        return f"conv{int(layer) + 1}_{int(index) + 1}_{_MMDNN_BLOCK_PART[part]}.{attr}"
    module, attr = _split_key(key)
    return f"{_MMDNN_TOP[module]}.{attr}"


def internal_to_vggface2(key: str) -> str:
    """State-dict key of this model -> key in the VGGFace2 Caffe-converted pickle."""
    block = _BLOCK_KEY.fullmatch(key)
    if block:
        layer, index, part, attr = block.groups()
        return f"layer{layer}.{index}.{_VGGFACE2_BLOCK_PART.get(part, part)}.{attr}"
    module, attr = _split_key(key)
    return f"{_VGGFACE2_TOP.get(module, module)}.{attr}"
