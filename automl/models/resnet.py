"""A residual CNN in the style of ResNet-9 / airbench (the fast CIFAR-10 networks): a stem conv, then
stages of [conv -> max-pool -> BN -> activation] followed by ``depth`` residual blocks of two
conv-BN-activation layers each, global max pooling and a linear head whose logits are scaled down
(``logit_scale``: 0.125 as in ResNet-9; a cooler softmax trains faster with label smoothing).

Widths and depths are per stage and searchable (``width1..3``, ``depth1..3``); with widths 64/128/256
and depths 1/0/1 it is ResNet-9 shaped, with 64/256/256 and depths 0/0/0 airbench94 shaped (without
its whitening layer). ``tta`` makes the module itself average its logits with those of the flipped
image in eval mode, so validation, test, predict and the exported ONNX model all use flip
test-time augmentation.

Pruning: the residual adds tie a stage's entry conv to every block's second conv (Torch-Pruning
finds that group itself), so they share the stage width in ``widths``; each block's first conv has its
own width in ``inner``.
"""

from __future__ import annotations

import torch
from torch import nn

from automl.data.augment import flip_tta
from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
STAGES = 3
MAX_WIDTH = 1024
MAX_BLOCKS = 8  # residual blocks per stage


def conv_bn(c_in: int, c_out: int, act: type[nn.Module], pool: bool = False) -> nn.Sequential:
    """conv3x3 (no bias) -> [max-pool 2] -> BN -> activation; pooling before BN halves BN's work."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out), act()]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + f(x) with f two conv-BN-activation layers (width -> inner -> width)."""

    def __init__(self, width: int, inner: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.conv1 = conv_bn(width, inner, act)
        self.conv2 = conv_bn(inner, width, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class Stage(nn.Module):
    def __init__(self, c_in: int, width: int, inner: list[int], pool: bool, act: type[nn.Module]) -> None:
        super().__init__()
        self.entry = conv_bn(c_in, width, act, pool=pool)
        self.blocks = nn.Sequential(*(Residual(width, int(i), act) for i in inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.entry(x))


class ResNet(nn.Module):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        act = ACTIVATIONS[arch["activation"]]
        stem = int(arch["stem"])
        self.stem = conv_bn(int(arch["in_channels"]), stem, act)
        stages, c_in = [], stem
        for width, inner, pool in zip(arch["widths"], arch["inner"], arch["pools"], strict=True):
            stages.append(Stage(c_in, int(width), [int(i) for i in inner], bool(pool), act))
            c_in = int(width)
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(c_in, int(arch["num_classes"]), bias=False)
        self.logit_scale = float(arch.get("logit_scale", 1.0))
        self.tta = bool(arch.get("tta", False))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass, without test-time augmentation."""
        x = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.classifier(x) * self.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tta and not self.training:
            return flip_tta(self.logits, x)
        return self.logits(x)


def resnet_arch(params: Params, meta: Meta) -> Arch:
    """Sampled parameters + data metadata -> the plain arch dict ``ResNet`` takes."""
    c, h, w = (int(v) for v in meta["input_shape"])
    defaults = {1: (64, 1), 2: (128, 0), 3: (256, 1)}  # ResNet-9 shaped
    widths, inner, pools = [], [], []
    size = min(h, w)
    for s in range(1, STAGES + 1):
        width = int(params.get(f"width{s}", defaults[s][0]))
        depth = int(params.get(f"depth{s}", defaults[s][1]))
        if not 1 <= width <= MAX_WIDTH or depth < 0:
            raise ValueError(f"stage {s}: width must be in [1, {MAX_WIDTH}] and depth >= 0, "
                             f"got width{s}={width}, depth{s}={depth}")
        widths.append(width)
        inner.append([width] * depth)
        pool = size >= 2  # pool while there is space left to halve (8x8 digits: 3 pools down to 1x1)
        pools.append(pool)
        size //= 2 if pool else 1
    stem = int(params.get("stem", 64))
    activation = params.get("activation", "relu")
    if stem < 1:
        raise ValueError(f"stem must be >= 1, got {stem}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
    return {
        "family": "resnet",
        "in_channels": c,
        "input_size": [h, w],
        "stem": stem,
        "widths": widths,
        "inner": inner,
        "pools": pools,
        "activation": activation,
        "logit_scale": float(params.get("logit_scale", 0.125)),
        "tta": bool(params.get("tta", False)),
        "num_classes": int(meta["num_classes"]),
    }


@register_model("resnet")
class ResNetFamily(ModelFamily):
    """Residual CNN (ResNet-9 / airbench style) for the image task; pruning narrows the stem, every
    stage (entry conv and block outputs together) and every block's inner conv."""

    tasks = ("image",)
    params = frozenset(
        {"stem", "activation", "logit_scale", "tta", *(f"{k}{s}" for k in ("width", "depth") for s in (1, 2, 3))}
    )
    limits = {"stem": (1, MAX_WIDTH), **{f"width{s}": (1, MAX_WIDTH) for s in range(1, STAGES + 1)},
              **{f"depth{s}": (0, MAX_BLOCKS) for s in range(1, STAGES + 1)}}

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return resnet_arch(params, meta)

    def build(self, arch: Arch) -> nn.Module:
        if not len(arch["widths"]) == len(arch["inner"]) == len(arch["pools"]):
            raise ValueError("'widths', 'inner' and 'pools' differ in length")
        if arch["activation"] not in ACTIVATIONS:
            raise ValueError(f"unknown activation {arch['activation']!r}")
        return ResNet(arch)

    def pruned_arch(self, model: nn.Module, arch: Arch) -> Arch:
        """Read the new widths back: the stem conv, each stage's entry conv and each block's first conv."""
        stages = list(model.stages)  # type: ignore[arg-type]
        if len(stages) != len(arch["widths"]):
            raise ValueError(f"pruned resnet has {len(stages)} stages, arch lists {len(arch['widths'])}")
        inner = [[int(b.conv1[0].out_channels) for b in st.blocks] for st in stages]
        if [len(i) for i in inner] != [len(i) for i in arch["inner"]]:
            raise ValueError("pruned resnet has a different number of blocks than its arch")
        return {
            **arch,
            "stem": int(model.stem[0].out_channels),  # type: ignore[index]
            "widths": [int(st.entry[0].out_channels) for st in stages],
            "inner": inner,
        }
