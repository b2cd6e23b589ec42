"""TextCNN (Kim 2014): token embedding, parallel 1-D convolutions of several widths, ReLU,
max-over-time pooling, dropout and a linear classifier. The input is int64 token ids (N, L) with 0 as
padding; filter counts are explicit per branch so that pruning can store the pruned widths."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def parse_kernel_sizes(value: Any) -> list[int]:
    """``"3-4-5"``, ``"3,4,5"``, ``[3, 4, 5]`` or ``3`` -> [3, 4, 5]; ValueError when malformed."""
    if isinstance(value, (list, tuple)):
        sizes = [int(v) for v in value]
    elif isinstance(value, int):
        sizes = [value]
    else:
        sizes = [int(v) for v in str(value).replace(",", "-").split("-") if v.strip()]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"kernel_sizes must be positive integers like '3-4-5', got {value!r}")
    return sizes


def textcnn_arch(params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Sampled parameters + text metadata -> the plain arch dict ``build_textcnn`` takes."""
    spec = meta["preprocess"]
    kernels = parse_kernel_sizes(params.get("kernel_sizes", "3-4-5"))
    filters = int(params.get("filters", 100))
    if filters < 1:
        raise ValueError(f"filters must be >= 1, got {filters}")
    if max(kernels) > int(spec["max_len"]):
        raise ValueError(f"kernel size {max(kernels)} is longer than the texts (max_len {spec['max_len']})")
    return {
        "family": "textcnn",
        "vocab_size": len(spec["vocab"]),
        "embed_dim": int(params.get("embed_dim", 128)),
        "kernel_sizes": kernels,
        "filters": [filters] * len(kernels),
        "dropout": float(params.get("dropout", 0.5)),
        "num_classes": int(meta["num_classes"]),
    }


class TextCNN(nn.Module):
    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.embedding = nn.Embedding(int(arch["vocab_size"]), int(arch["embed_dim"]), padding_idx=0)
        nn.init.uniform_(self.embedding.weight, -0.25, 0.25)  # Kim 2014's random initialisation
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.convs = nn.ModuleList(
            nn.Conv1d(int(arch["embed_dim"]), int(f), int(k))
            for k, f in zip(arch["kernel_sizes"], arch["filters"], strict=True)
        )
        self.dropout = nn.Dropout(float(arch["dropout"]))
        self.classifier = nn.Linear(sum(int(f) for f in arch["filters"]), int(arch["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedding(x.long()).transpose(1, 2)  # (N, E, L)
        pooled = [torch.relu(conv(e)).amax(dim=2) for conv in self.convs]
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))


def build_textcnn(arch: dict[str, Any]) -> TextCNN:
    if len(arch["kernel_sizes"]) != len(arch["filters"]):
        raise ValueError("'kernel_sizes' and 'filters' differ in length")
    return TextCNN(arch)
