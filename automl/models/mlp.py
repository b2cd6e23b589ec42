"""An MLP for tabular data: embeddings for high-cardinality categoricals, then ``depth`` blocks of
linear -> (batch norm) -> activation -> dropout, then a linear head.

The input is one float32 matrix (N, F): ``num_dense`` dense features followed by one level-id column
per embedding (cast to long inside ``forward``), so the ONNX model keeps a single ``input``. With
``num_embedding: plr`` the numeric columns go through periodic embeddings first (``_tabular.py``). For
regression the head's output is de-standardised inside ``forward`` (``y * target_std +
target_mean``), so ``logits`` are predictions in the target's own units. Hidden widths are explicit
per layer so that pruning can store the pruned widths.
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


def mlp_arch(params: Params, meta: Meta) -> Arch:
    """Sampled parameters + tabular metadata -> the plain arch dict ``build_mlp`` takes."""
    depth = int(params.get("depth", 2))
    width = int(params.get("width", 128))
    if depth < 0 or width < 1:
        raise ValueError(f"depth must be >= 0 and width >= 1, got depth={depth}, width={width}")
    activation = params.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
    return {
        **tabular_base_arch("mlp", params, meta),
        "hidden": [width] * depth,
        "batch_norm": bool(params.get("batch_norm", False)),
        "activation": activation,
        "dropout": float(params.get("dropout", 0.0)),
    }


class MLP(TabularInput):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        width_in = self.init_input(arch)
        act = ACTIVATIONS[arch["activation"]]
        layers: list[nn.Module] = []
        for width in check_widths("hidden widths", arch["hidden"]):
            layers.append(nn.Linear(width_in, int(width), bias=not arch["batch_norm"]))
            if arch["batch_norm"]:
                layers.append(nn.BatchNorm1d(int(width)))
            layers.append(act())
            if float(arch["dropout"]) > 0:
                layers.append(nn.Dropout(float(arch["dropout"])))
            width_in = int(width)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, int(arch["out_features"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.destandardise(self.head(self.features(self.input_features(x))))


def build_mlp(arch: Arch) -> MLP:
    for key in ("num_dense", "embeddings", "hidden", "batch_norm", "activation", "dropout", "out_features"):
        if key not in arch:
            raise KeyError(key)
    return MLP(arch)


@register_model("mlp")
class MLPFamily(ModelFamily):
    """The MLP of the tabular task; pruning narrows the hidden layers (``hidden``)."""

    tasks = ("tabular",)
    params = frozenset({"depth", "width", "dropout", "batch_norm", "activation", *NUM_EMBEDDING_PARAMS})
    limits = {**TABULAR_LIMITS, "depth": (0, MAX_TABULAR_DEPTH)}
    column_lists = COLUMN_LISTS

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return mlp_arch(params, meta)

    def build(self, arch: Arch) -> nn.Module:
        return build_mlp(arch)

    def prune_ignored(self, model: nn.Module) -> list[nn.Module | nn.Parameter]:
        """Categorical embeddings keep their dimensions (a safeguard: Torch-Pruning starts groups at
        linear/conv layers only, so they are not reached anyway), and so do the PLR numeric
        embeddings (plain parameters, which Torch-Pruning would otherwise narrow)."""
        return model.input_layers()

    def pruned_arch(self, model: nn.Module, arch: Arch) -> Arch:
        """The hidden linear layers' out-features in ``model.features`` order are the new ``hidden``.

        The head (output size, regression's single output) and the embeddings are never pruned, so
        ``out_features``, ``embeddings`` and the de-standardisation constants stay as they were."""
        hidden = [int(m.out_features) for m in model.features if isinstance(m, nn.Linear)]
        if len(hidden) != len(arch["hidden"]):
            raise ValueError(f"pruned mlp has {len(hidden)} hidden layers, arch lists {len(arch['hidden'])}")
        if int(model.head.out_features) != int(arch["out_features"]):
            raise ValueError(f"pruned mlp head has {model.head.out_features} outputs, arch says {arch['out_features']}")
        return {**arch, "hidden": hidden}
