"""A bidirectional GRU text classifier: token embedding, a (multi-layer) bidirectional GRU, max
pooling over the non-padding time steps, dropout and a linear classifier. The input is int64 token
ids (N, L) with 0 as padding. Exports to ONNX with the TorchScript exporter (opset 17)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from automl.models._registry import ModelFamily, register_model


def gru_arch(params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Sampled parameters + text metadata -> the plain arch dict ``build_gru`` takes."""
    spec = meta["preprocess"]
    hidden = int(params.get("hidden", 64))
    layers = int(params.get("layers", 1))
    if hidden < 1 or layers < 1:
        raise ValueError(f"hidden and layers must be >= 1, got hidden={hidden}, layers={layers}")
    return {
        "family": "gru",
        "vocab_size": len(spec["vocab"]),
        "embed_dim": int(params.get("embed_dim", 128)),
        "hidden": hidden,
        "layers": layers,
        "bidirectional": True,
        "dropout": float(params.get("dropout", 0.3)),
        "num_classes": int(meta["num_classes"]),
    }


class BiGRU(nn.Module):
    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        hidden, layers = int(arch["hidden"]), int(arch["layers"])
        bidirectional = bool(arch.get("bidirectional", True))
        dropout = float(arch["dropout"])
        self.embedding = nn.Embedding(int(arch["vocab_size"]), int(arch["embed_dim"]), padding_idx=0)
        nn.init.uniform_(self.embedding.weight, -0.25, 0.25)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.gru = nn.GRU(
            int(arch["embed_dim"]), hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden * (2 if bidirectional else 1), int(arch["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        out, _ = self.gru(self.dropout(self.embedding(x)))  # (N, L, H * directions)
        # Max over real tokens only: padding steps get a large negative value (not -inf, so a text
        # of padding alone still gives finite logits).
        mask = (x != 0).unsqueeze(2)
        pooled = out.masked_fill(~mask, -1e4).amax(dim=1)
        return self.classifier(self.dropout(pooled))


def build_gru(arch: dict[str, Any]) -> BiGRU:
    return BiGRU(arch)


@register_model("gru")
class GRUFamily(ModelFamily):
    """The bidirectional GRU for the text task; not prunable (see ``prune_unsupported``)."""

    tasks = ("text",)
    params = frozenset({"embed_dim", "hidden", "layers", "dropout"})
    prune_unsupported = "GRU layers cannot be pruned structurally (Torch-Pruning supports conv/linear/LSTM)"

    def arch_from_params(self, params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return gru_arch(params, meta)

    def build(self, arch: dict[str, Any]) -> nn.Module:
        return build_gru(arch)
