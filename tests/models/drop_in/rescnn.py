"""A test-only model family, written exactly as a new file in ``automl/models/`` would be: a tiny
residual CNN for the image task (stem conv, ``depth`` basic blocks with identity shortcuts, global
average pooling, linear classifier). The tests put this folder on ``automl.models.__path__``; nothing
else in the project knows about it.

Pruning: the shortcuts tie the stem's and every block's output channels into one group
(Torch-Pruning finds that itself), so they share ``width``; each block's inner conv has its own
width in ``inner``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from automl.models import ModelFamily, register_model


class Block(nn.Module):
    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, inner, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class ResCNN(nn.Module):
    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        width = int(arch["width"])
        self.stem = nn.Sequential(nn.Conv2d(int(arch["in_channels"]), width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*(Block(width, int(i)) for i in arch["inner"]))
        self.fc = nn.Linear(width, int(arch["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


@register_model("rescnn")
class ResCNNFamily(ModelFamily):
    tasks = ("image",)
    params = frozenset({"depth", "width"})

    def arch_from_params(self, params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        width, depth = int(params.get("width", 16)), int(params.get("depth", 2))
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
        return {"family": "rescnn", "in_channels": int(meta["input_shape"][0]), "width": width,
                "inner": [width] * depth, "num_classes": int(meta["num_classes"])}

    def build(self, arch: dict[str, Any]) -> nn.Module:
        return ResCNN(arch)

    def pruned_arch(self, model: nn.Module, arch: dict[str, Any]) -> dict[str, Any]:
        inner = [int(b.conv1.out_channels) for b in model.blocks]
        if len(inner) != len(arch["inner"]):
            raise ValueError(f"pruned rescnn has {len(inner)} blocks, arch lists {len(arch['inner'])}")
        return {**arch, "width": int(model.stem[0].out_channels), "inner": inner}
