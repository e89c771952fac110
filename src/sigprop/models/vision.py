"""ResNet-18 exactly as torchvision builds it, without torchvision.

``resnet18()`` reproduces ``torchvision.models.resnet18(weights=None)``: the same module names and
structure (``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` … ``layer4`` of ``BasicBlock``
with ``conv1``/``bn1``/``relu``/``conv2``/``bn2``/``downsample``, ``avgpool``, ``fc``), the same
initialization (Kaiming normal, ``mode="fan_out"``, ``nonlinearity="relu"`` for every
convolution; BatchNorm weight 1, bias 0; ``nn.Linear``'s default for ``fc``; optionally the last
BatchNorm of every residual branch at 0, ``zero_init_residual``) and so the same parameter count
(11,689,512 at width 64 with 1000 classes). ``width`` scales the base channels (64 in
torchvision: stages of width, 2, 4, 8 × width channels) so that tests can run small copies.
Random numbers are drawn in the same order as torchvision, so a seeded copy has the same weights.

torchvision's CUDA-linked wheels cannot be installed next to a CPU-only torch; this module is
the same network for ``sigprop diagnose --net resnet18`` and for tests.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1, no bias (torchvision's ``conv3x3``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias (torchvision's ``conv1x1``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x)); downsample = identity unless the
    stride or the channels change (then a strided 1×1 convolution and a BatchNorm)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        norm_layer = nn.BatchNorm2d if norm_layer is None else norm_layer
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` for ``BasicBlock`` (groups 1, no dilation)."""

    def __init__(self, layers: tuple[int, int, int, int] = (2, 2, 2, 2), num_classes: int = 1000,
                 width: int = 64, zero_init_residual: bool = False,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1; got {width!r}")
        self._norm_layer = nn.BatchNorm2d if norm_layer is None else norm_layer
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * BasicBlock.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                norm_layer(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, norm_layer)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes, norm_layer=norm_layer)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(num_classes: int = 10, width: int = 64, zero_init_residual: bool = False,
             seed: int | None = None) -> ResNet:
    """ResNet-18 (torchvision's structure and initialization, randomly initialized) with
    ``width`` base channels (64 in torchvision) and ``num_classes`` outputs (torchvision's
    default is 1000; 10 here, CIFAR-sized; the classifier does not enter ``diagnose``). ``seed``, when given, seeds torch's global generator first (``sigprop
    diagnose`` seeds it itself and calls ``resnet18(seed=seed)``)."""
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    return ResNet((2, 2, 2, 2), num_classes=num_classes, width=width,
                  zero_init_residual=zero_init_residual)
