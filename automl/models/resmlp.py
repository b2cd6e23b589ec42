"""A residual MLP for tabular data: the "ResNet" of Gorishniy et al. 2021 ("Revisiting Deep Learning
Models for Tabular Data").

    stem:   Linear(in -> width)
    block:  x + Dropout(Linear(hidden -> width)(Dropout(act(Linear(width -> hidden)(Norm(x))))))
    head:   Norm -> act -> Linear(width -> outputs)

The input layer (categorical embeddings, optional PLR numeric embeddings) is the one of every
tabular family (``_tabular.py``); a regression output is de-standardised inside ``forward``. The
residual stream has one width for the whole network, each block its own hidden width, so pruning
(Torch-Pruning follows the residual adds) is described by ``width`` and ``hidden``.
"""

from __future__ import annotations

import torch
from torch import nn

from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models._tabular import (
    COLUMN_LISTS,
    MAX_TABULAR_DEPTH,
    NUM_EMBEDDING_PARAMS,
    TABULAR_LIMITS,
    TabularInput,
    check_widths,
    tabular_base_arch,
)
from automl.models.cnn import ACTIVATIONS

NORMS = ("batch", "layer")


def _norm(kind: str, width: int) -> nn.Module:
    return nn.BatchNorm1d(width) if kind == "batch" else nn.LayerNorm(width)


def resmlp_arch(params: Params, meta: Meta) -> Arch:
    """Sampled parameters + tabular metadata -> the plain arch dict: ``depth`` blocks on a residual
    stream of ``width`` units, each with ``width * res_factor`` hidden units."""
    depth = int(params.get("depth", 2))
    width = int(params.get("width", 128))
    factor = float(params.get("res_factor", 2))
    if depth < 1 or width < 1 or factor <= 0:
        raise ValueError(f"depth and width must be >= 1 and res_factor > 0, got {depth}, {width}, {factor}")
    norm = params.get("norm", "batch")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r} (choose from {', '.join(NORMS)})")
    activation = params.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
    return {
        **tabular_base_arch("resmlp", params, meta),
        "width": width,
        "hidden": [max(1, round(width * factor))] * depth,
        "norm": norm,
        "activation": activation,
        "dropout": float(params.get("dropout", 0.0)),
    }


class ResBlock(nn.Module):
    def __init__(self, width: int, hidden: int, norm: str, act: type[nn.Module], dropout: float) -> None:
        super().__init__()
        self.norm = _norm(norm, width)
        self.linear1 = nn.Linear(width, hidden)
        self.act = act()
        self.drop1 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, width)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop2(self.linear2(self.drop1(self.act(self.linear1(self.norm(x))))))


class ResMLP(TabularInput):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        width_in = self.init_input(arch)
        (width,) = check_widths("width", [arch["width"]])
        hidden = check_widths("hidden widths", arch["hidden"])
        if not hidden:
            raise ValueError("a residual MLP needs at least one block")
        norm, act, dropout = arch["norm"], ACTIVATIONS[arch["activation"]], float(arch["dropout"])
        if norm not in NORMS or not 0.0 <= dropout < 1.0:
            raise ValueError(f"norm must be one of {NORMS} and dropout in [0, 1), got {norm!r}, {dropout}")
        self.stem = nn.Linear(width_in, width)
        self.blocks = nn.Sequential(*(ResBlock(width, h, norm, act, dropout) for h in hidden))
        self.head_norm = _norm(norm, width)
        self.head_act = act()
        self.head = nn.Linear(width, int(arch["out_features"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(self.input_features(x)))
        return self.destandardise(self.head(self.head_act(self.head_norm(h))))


@register_model("resmlp")
class ResMLPFamily(ModelFamily):
    """Residual MLP of the tabular task; pruning narrows the residual stream and the blocks' hidden layers."""

    tasks = ("tabular",)
    params = frozenset({"depth", "width", "res_factor", "norm", "dropout", "activation", *NUM_EMBEDDING_PARAMS})
    limits = {**TABULAR_LIMITS, "depth": (1, MAX_TABULAR_DEPTH), "res_factor": (0, 8)}
    column_lists = COLUMN_LISTS

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return resmlp_arch(params, meta)

    def build(self, arch: Arch) -> nn.Module:
        for key in ("num_dense", "embeddings", "width", "hidden", "norm", "activation", "dropout", "out_features"):
            if key not in arch:
                raise KeyError(key)
        return ResMLP(arch)

    def prune_ignored(self, model: nn.Module) -> list[nn.Module | nn.Parameter]:
        """The categorical embeddings and the PLR parameters stay whole."""
        return model.input_layers()

    def pruned_arch(self, model: nn.Module, arch: Arch) -> Arch:
        """The residual width is the stem's output size (every add shares it), each block's hidden
        width its first linear layer's; head, embeddings and target constants stay."""
        width = int(model.stem.out_features)
        hidden = [int(b.linear1.out_features) for b in model.blocks]
        if len(hidden) != len(arch["hidden"]):
            raise ValueError(f"pruned resmlp has {len(hidden)} blocks, arch lists {len(arch['hidden'])}")
        if any(int(b.linear2.out_features) != width for b in model.blocks) or model.head.in_features != width:
            raise ValueError("pruned resmlp's residual stream has different widths")
        if int(model.head.out_features) != int(arch["out_features"]):
            raise ValueError(f"pruned resmlp head has {model.head.out_features} outputs, "
                             f"arch says {arch['out_features']}")
        return {**arch, "width": width, "hidden": hidden}
