"""A bidirectional GRU text classifier: token embedding, a (multi-layer) bidirectional GRU, max
pooling over the non-padding time steps, dropout and a linear classifier. The input is int64 token
ids (N, L) with 0 as padding. Exports to ONNX with the TorchScript exporter (opset 17).

With ``packed`` in the arch (every model built since it exists) the GRU reads each text as a packed
sequence of its real length: the backward direction starts at the last real token, not at the end of
the padding, so the logits do not depend on how much padding follows. A batch is then cut to its
longest text, and training draws batches of similar length (``batch_size_key``, see
``automl.train.epoch_batches``): the recurrent steps follow the real lengths. The ONNX graph keeps the
full length and passes the lengths to its GRU node (``sequence_lens``). An arch without ``packed``
(older model files) runs the GRU over the padding, as it was trained."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models._text import may_trim, token_lengths

MAX_UNITS = 4096  # token embedding size, and GRU units per direction
MAX_LAYERS = 16  # stacked GRU layers


def gru_arch(params: Params, meta: Meta) -> Arch:
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
        "packed": True,
        "dropout": float(params.get("dropout", 0.3)),
        "num_classes": int(meta["num_classes"]),
    }


class BiGRU(nn.Module):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        hidden, layers = int(arch["hidden"]), int(arch["layers"])
        bidirectional = bool(arch.get("bidirectional", True))
        dropout = float(arch["dropout"])
        self.packed = bool(arch.get("packed", False))
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

    def batch_size_key(self, x: torch.Tensor) -> torch.Tensor | None:
        """The real length of each text (``automl.train`` groups batches by it); None for an unpacked
        GRU, whose cost is the full padded length whatever the batch."""
        return token_lengths(x.long()) if self.packed else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        if self.packed:
            lengths = token_lengths(x)
            if may_trim():
                x = x[:, : max(1, int(lengths.max()))]
            # A row of padding alone reads one padding step (a packed sequence cannot be empty).
            packed = pack_padded_sequence(self.dropout(self.embedding(x)), lengths.clamp(min=1).cpu(),
                                          batch_first=True, enforce_sorted=False)
            out, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        else:
            out, _ = self.gru(self.dropout(self.embedding(x)))  # (N, L, H * directions)
        # Max over real tokens only: padding steps get a large negative value (not -inf, so a text
        # of padding alone still gives finite logits).
        mask = (x != 0).unsqueeze(2)
        pooled = out.masked_fill(~mask, -1e4).amax(dim=1)
        return self.classifier(self.dropout(pooled))


def build_gru(arch: Arch) -> BiGRU:
    return BiGRU(arch)


@register_model("gru")
class GRUFamily(ModelFamily):
    """The bidirectional GRU for the text task; not prunable (see ``prune_unsupported``)."""

    tasks = ("text",)
    params = frozenset({"embed_dim", "hidden", "layers", "dropout"})
    limits = {"embed_dim": (1, MAX_UNITS), "hidden": (1, MAX_UNITS), "layers": (1, MAX_LAYERS)}
    prune_unsupported = "GRU layers cannot be pruned structurally (Torch-Pruning supports conv/linear/LSTM)"

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return gru_arch(params, meta)

    def build(self, arch: Arch) -> nn.Module:
        return build_gru(arch)
