"""ResNet-18/34/50 with torchvision parameter names, plus a light FPN decoder to dense stride-4/8 features.

Parameter names follow torchvision (conv1, bn1, layer1..layer4, blocks with conv1/bn1/conv2/bn2[/conv3/bn3]
and downsample.0/.1), so a torchvision or DINO ResNet ``state_dict`` file loads with
:meth:`ResNet.load_pretrained` / :meth:`ResNetFPN.load_pretrained` (a strict-key report is returned).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple, Type, Union

import torch
from torch import nn
import torch.nn.functional as F

from .checkpoint import LoadReport, load_state_dict_report
from .registry import register


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


RESNET_SPECS: Dict[int, Tuple[Type[nn.Module], Tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


# Wrappers that checkpoints commonly put around a ResNet state_dict, and key prefixes to strip.
_CONTAINER_KEYS = ('state_dict', 'model', 'teacher', 'student', 'model_state')
_PREFIXES = ('module.', 'backbone.', 'encoder.', 'model.')
# torchvision's classifier: present in ImageNet files, absent here by design.
_IGNORED_PREFIXES = ('fc.',)


def _unwrap_state_dict(obj) -> Dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise ValueError(f'weights file does not hold a state_dict (got {type(obj).__name__})')
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


@register('ResNet')
class ResNet(nn.Module):
    """torchvision-compatible ResNet trunk without the classifier.

    depth: 18, 34 or 50. base_channels: 64 as torchvision; 16 gives a tiny CPU model (not weight-compatible).
    forward(images (B, 3, H, W)) -> [C2 (stride 4), C3 (8), C4 (16), C5 (32)].
    """

    def __init__(self, depth: int = 18, base_channels: int = 64, in_channels: int = 3):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f'ResNet depth must be one of {sorted(RESNET_SPECS)}, got {depth}')
        if base_channels < 1:
            raise ValueError(f'base_channels must be positive, got {base_channels}')
        block, counts = RESNET_SPECS[depth]
        self.depth, self.base_channels = depth, base_channels
        self.conv1 = nn.Conv2d(in_channels, base_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._cin = base_channels
        self.layer1 = self._make_layer(block, base_channels, counts[0], 1)
        self.layer2 = self._make_layer(block, base_channels * 2, counts[1], 2)
        self.layer3 = self._make_layer(block, base_channels * 4, counts[2], 2)
        self.layer4 = self._make_layer(block, base_channels * 8, counts[3], 2)
        self.out_channels = [base_channels * m * block.expansion for m in (1, 2, 4, 8)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, count: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self._cin, planes * block.expansion, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self._cin, planes, stride, downsample)]
        self._cin = planes * block.expansion
        layers += [block(self._cin, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.conv1.in_channels:
            raise ValueError(f'images must be (B, {self.conv1.in_channels}, H, W), got {tuple(x.shape)}')
        if not x.is_floating_point():
            raise ValueError(f'images must be float and normalised (mean/std), got {x.dtype}')
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]

    def load_pretrained(self, path_or_state: Union[str, Dict[str, torch.Tensor]], strict: bool = False,
                        map_location: str = 'cpu') -> LoadReport:
        """Load a torchvision / DINO ResNet state_dict (file path or dict); ``fc.*`` is ignored.

        Returns a LoadReport; ``strict=True`` raises ValueError on missing or mis-shaped tensors.
        """
        obj = path_or_state
        if not isinstance(obj, dict):
            obj = torch.load(str(obj), map_location=map_location, weights_only=True)
        return load_state_dict_report(self, _unwrap_state_dict(obj), ignore_prefixes=_IGNORED_PREFIXES, strict=strict)


@register('ResNetFPN')
class ResNetFPN(nn.Module):
    """ResNet trunk + FPN-style top-down decoder -> dense per-pixel features.

    images (B, 3, H, W) float, normalised -> (B, out_dim, ceil(H / stride), ceil(W / stride)).
    stride: 4 (default) or 8. decoder_channels: FPN width (default max(out_dim, base_channels)).
    freeze_backbone: no gradients into the ResNet and its BatchNorm kept in eval mode (frozen statistics).
    """

    def __init__(self, depth: int = 18, base_channels: int = 64, out_dim: int = 64, stride: int = 4,
                 decoder_channels: Optional[int] = None, freeze_backbone: bool = False,
                 pretrained: Optional[str] = None):
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f'ResNetFPN stride must be 4 or 8, got {stride}')
        if out_dim < 1:
            raise ValueError(f'out_dim must be positive, got {out_dim}')
        self.backbone = ResNet(depth, base_channels)
        self.out_dim, self.stride, self.depth = int(out_dim), int(stride), depth
        dc = int(decoder_channels) if decoder_channels else max(out_dim, base_channels)
        self.decoder_channels = dc
        levels = [4, 8, 16, 32]
        self.first_level = levels.index(stride)
        chans = self.backbone.out_channels[self.first_level:]
        self.lateral = nn.ModuleList([nn.Conv2d(c, dc, 1) for c in chans])
        self.smooth = nn.Sequential(nn.Conv2d(dc, dc, 3, padding=1, bias=False), nn.BatchNorm2d(dc),
                                    nn.ReLU(inplace=True))
        self.head = nn.Conv2d(dc, out_dim, 1)
        self.freeze_backbone = bool(freeze_backbone)
        if pretrained:
            self.load_pretrained(pretrained)
        if self.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> 'ResNetFPN':
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def load_pretrained(self, path_or_state, strict: bool = False) -> LoadReport:
        """Load torchvision-named ResNet weights into ``self.backbone`` (see ResNet.load_pretrained)."""
        return self.backbone.load_pretrained(path_or_state, strict=strict)

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        return math.ceil(height / self.stride), math.ceil(width / self.stride)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) -> (B, out_dim, ceil(H / stride), ceil(W / stride))."""
        feats = self.backbone(images)[self.first_level:]
        y = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            y = lat(f) + F.interpolate(y, size=f.shape[-2:], mode='bilinear', align_corners=False)
        size = self.output_size(images.shape[-2], images.shape[-1])
        if tuple(y.shape[-2:]) != size:
            y = F.interpolate(y, size=size, mode='bilinear', align_corners=False)
        return self.head(self.smooth(y))
