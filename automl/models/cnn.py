"""A plain CNN: ``depth`` blocks of conv3x3 -> (batch norm) -> activation -> max-pool, then global
average pooling, dropout and a linear classifier. Widths are explicit per layer so that channel
pruning can store the pruned widths and rebuild the model."""

from __future__ import annotations

import torch
from torch import nn

from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
INITS = ("default", "kaiming", "xavier")
MAX_WIDTH = 512
MAX_DEPTH = 16  # conv blocks: past the pooling steps each one adds a full-resolution block


def cnn_arch(params: Params, meta: Meta) -> Arch:
    """Sampled parameters + data metadata -> the plain arch dict ``build_cnn`` takes."""
    c, h, w = meta["input_shape"]
    depth = int(params.get("depth", 2))
    base = int(params.get("width", 32))
    if depth < 1 or base < 1:
        raise ValueError(f"depth and width must be >= 1, got depth={depth}, width={base}")
    widths, pools = [], []
    size = min(h, w)
    for i in range(depth):
        widths.append(min(base * 2**i, MAX_WIDTH))
        pool = size >= 2  # pool while there is space left to halve
        pools.append(pool)
        if pool:
            size //= 2
    activation = params.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
    init = params.get("init", "default")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r} (choose from {', '.join(INITS)})")
    return {
        "family": "cnn",
        "in_channels": int(c),
        "input_size": [int(h), int(w)],
        "widths": widths,
        "pools": pools,
        "batch_norm": bool(params.get("batch_norm", True)),
        "activation": activation,
        "dropout": float(params.get("dropout", 0.0)),
        "init": init,
        "num_classes": int(meta["num_classes"]),
    }


class CNN(nn.Module):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        act = ACTIVATIONS[arch["activation"]]
        layers: list[nn.Module] = []
        c_in = int(arch["in_channels"])
        for width, pool in zip(arch["widths"], arch["pools"], strict=True):
            layers.append(nn.Conv2d(c_in, int(width), 3, padding=1, bias=not arch["batch_norm"]))
            if arch["batch_norm"]:
                layers.append(nn.BatchNorm2d(int(width)))
            layers.append(act())
            if pool:
                layers.append(nn.MaxPool2d(2))
            c_in = int(width)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(float(arch["dropout"]))
        self.classifier = nn.Linear(c_in, int(arch["num_classes"]))
        init_weights(self, arch.get("init", "default"), arch["activation"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def init_weights(model: nn.Module, init: str, activation: str = "relu") -> None:
    """Apply Kaiming/He or Xavier/Glorot initialisation to conv and linear weights ('default' keeps
    PyTorch's)."""
    if init == "default":
        return
    nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            if init == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_cnn(arch: Arch) -> CNN:
    if len(arch["widths"]) != len(arch["pools"]):
        raise ValueError("'widths' and 'pools' differ in length")
    return CNN(arch)


@register_model("cnn")
class CNNFamily(ModelFamily):
    """The plain CNN of the image task; pruning narrows every conv layer (``widths``)."""

    tasks = ("image",)
    params = frozenset({"depth", "width", "dropout", "batch_norm", "activation", "init"})
    limits = {"depth": (1, MAX_DEPTH), "width": (1, MAX_WIDTH)}

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return cnn_arch(params, meta)

    def build(self, arch: Arch) -> nn.Module:
        return build_cnn(arch)

    def pruned_arch(self, model: nn.Module, arch: Arch) -> Arch:
        """The conv out-channel counts in ``model.features`` order are the new ``widths``."""
        widths = [int(m.out_channels) for m in model.features if isinstance(m, nn.Conv2d)]
        if len(widths) != len(arch["widths"]):
            raise ValueError(f"pruned cnn has {len(widths)} conv layers, arch lists {len(arch['widths'])}")
        return {**arch, "widths": widths}
