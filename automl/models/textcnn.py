"""TextCNN (Kim 2014): token embedding, parallel 1-D convolutions of several widths, ReLU,
max-over-time pooling, dropout and a linear classifier. The input is int64 token ids (N, L) with 0 as
padding; filter counts are explicit per branch so that pruning can store the pruned widths.

A batch is cut to its longest text plus the widest kernel before the convolutions: that keeps every
window a full-length row would pool over (the windows reaching into the padding, and at least one of
padding alone), so the logits are those of the full length while the work follows the real lengths.
Training draws batches of similar length (``batch_size_key``, see ``automl.train.epoch_batches``)."""

from __future__ import annotations

import torch
from torch import nn

from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models._text import may_trim, token_lengths


def parse_kernel_sizes(value: object) -> list[int]:
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


def textcnn_arch(params: Params, meta: Meta) -> Arch:
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


MAX_EMBED = 4096  # token embedding size, and filters per kernel width
TRIM_STEP = 8  # a cut batch keeps a multiple of this many token columns (or all of them)


class TextCNN(nn.Module):
    def __init__(self, arch: Arch) -> None:
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
        self.widest = max(int(k) for k in arch["kernel_sizes"])

    def batch_size_key(self, x: torch.Tensor) -> torch.Tensor:
        """The real length of each text: what one sample costs (``automl.train`` groups batches by it)."""
        return token_lengths(x.long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        if may_trim() and x.shape[1] > self.widest:
            # A row of length n meets padding-only windows from position n on; keeping n + widest
            # columns keeps one of them and every partial one, so the max pooling is unchanged. The
            # width is rounded up to a multiple of TRIM_STEP: few distinct shapes, so the CPU
            # convolution kernels (oneDNN) built for each new shape are built a few times, not per batch.
            keep = -(-(int(token_lengths(x).max()) + self.widest) // TRIM_STEP) * TRIM_STEP
            if keep < x.shape[1]:
                x = x[:, :keep]
        e = self.embedding(x).transpose(1, 2)  # (N, E, L)
        pooled = [torch.relu(conv(e)).amax(dim=2) for conv in self.convs]
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))


def build_textcnn(arch: Arch) -> TextCNN:
    if len(arch["kernel_sizes"]) != len(arch["filters"]):
        raise ValueError("'kernel_sizes' and 'filters' differ in length")
    return TextCNN(arch)


@register_model("textcnn")
class TextCNNFamily(ModelFamily):
    """TextCNN for the text task; pruning narrows each branch's filters (``filters``)."""

    tasks = ("text",)
    params = frozenset({"embed_dim", "filters", "kernel_sizes", "dropout"})
    limits = {"embed_dim": (1, MAX_EMBED), "filters": (1, MAX_EMBED)}

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return textcnn_arch(params, meta)

    def build(self, arch: Arch) -> nn.Module:
        return build_textcnn(arch)

    def prune_ignored(self, model: nn.Module) -> list[nn.Module]:
        """The token embedding keeps its dimension, the convs' input channels (a safeguard, as for mlp)."""
        return [model.embedding]

    def pruned_arch(self, model: nn.Module, arch: Arch) -> Arch:
        """Each branch's conv out-channel count is its new ``filters`` entry (the classifier's
        in-features are their sum, which the builder recomputes)."""
        filters = [int(conv.out_channels) for conv in model.convs]
        if len(filters) != len(arch["filters"]):
            raise ValueError(f"pruned textcnn has {len(filters)} branches, arch lists {len(arch['filters'])}")
        if int(model.embedding.embedding_dim) != int(arch["embed_dim"]):
            raise ValueError("the textcnn embedding was pruned; it must keep its dimension")
        return {**arch, "filters": filters}
