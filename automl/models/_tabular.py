"""What the tabular families (mlp, resmlp, tabm) share: the arch fields every one of them reads from
the preprocessing spec, and the input layer that turns the encoded row matrix into features.

The encoded input is one float32 matrix (N, F): ``num_dense`` dense columns (standardised numerics,
missing indicators, one-hot blocks) then one level-id column per embedded categorical. The input
layer embeds the categoricals and, with ``num_embedding: plr``, replaces each standardised numeric
value by its periodic embedding (Gorishniy et al. 2022, "On Embeddings for Numerical Features in
Tabular Deep Learning": ``ReLU(Linear(concat[cos(2 pi c x), sin(2 pi c x)]))`` per feature, with the
frequencies ``c`` drawn from N(0, sigma)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from automl.models._registry import Arch, Meta, Params

NUM_EMBEDDINGS = ("none", "plr")
#: the sampled parameters of the numeric embedding, read by every tabular family
NUM_EMBEDDING_PARAMS = frozenset({"num_embedding", "plr_frequencies", "plr_dim", "plr_sigma"})
MAX_FREQUENCIES = 256
MAX_PLR_DIM = 256
#: what a tabular family builds (``ModelFamily.limits``): units of a hidden layer (8192 x 8192 float32
#: weights are 256 MiB), hidden layers or blocks, and the data columns a stored arch may list
MAX_TABULAR_WIDTH = 8192
MAX_TABULAR_DEPTH = 32
MAX_COLUMNS = 100_000
TABULAR_LIMITS: dict[str, tuple[int, int]] = {
    "width": (1, MAX_TABULAR_WIDTH), "plr_frequencies": (1, MAX_FREQUENCIES), "plr_dim": (1, MAX_PLR_DIM),
}
#: arch keys listing one entry per data column (categorical embeddings, PLR's numeric positions)
COLUMN_LISTS = {"embeddings": MAX_COLUMNS, "plr": MAX_COLUMNS}


def numeric_positions(spec: Meta) -> list[int]:
    """Positions, within the dense block, of the standardised numeric values (not their missing
    indicators, not one-hot columns), in column order."""
    out: list[int] = []
    pos = 0
    for col in spec["columns"]:
        if col["type"] == "numeric":
            out.append(pos)
            pos += 1 + int(bool(col["missing_indicator"]))
        elif col["type"] == "onehot":
            pos += len(col["levels"])
    return out


def tabular_base_arch(family: str, params: Params, meta: Meta) -> Arch:
    """The arch fields of every tabular family: input layout, embeddings, numeric embedding, output
    size and the regression target's de-standardisation constants."""
    from automl.data.tabular import embedding_sizes

    spec = meta["preprocess"]
    regression = spec.get("problem") == "regression"
    arch: Arch = {
        "family": family,
        "num_dense": int(spec["num_dense"]),
        "embeddings": embedding_sizes(spec),
        "out_features": 1 if regression else int(meta["num_classes"]),
        "target_mean": float(spec.get("target_mean", 0.0)) if regression else 0.0,
        "target_std": float(spec.get("target_std", 1.0)) if regression else 1.0,
    }
    kind = params.get("num_embedding", "none")
    if kind not in NUM_EMBEDDINGS:
        raise ValueError(f"unknown num_embedding {kind!r} (choose from {', '.join(NUM_EMBEDDINGS)})")
    numeric = numeric_positions(spec)
    if kind == "plr" and numeric:
        arch["plr"] = {
            "index": numeric,
            "frequencies": int(params.get("plr_frequencies", 16)),
            "dim": int(params.get("plr_dim", 16)),
            "sigma": float(params.get("plr_sigma", 0.1)),
        }
    return arch


class PeriodicEmbedding(nn.Module):
    """PLR embeddings of ``n`` numeric features: (N, n) -> (N, n * dim).

    Feature i: ``ReLU(W_i @ concat[cos(2 pi c_i x_i), sin(2 pi c_i x_i)] + b_i)`` with its own
    ``k`` frequencies ``c_i`` (drawn from N(0, sigma)) and its own linear layer (2k -> dim), computed
    for all features at once as one batched product (a grouped convolution is several times slower
    on CPU). The parameters are plain tensors, which the families list for pruning to leave alone."""

    def __init__(self, n: int, frequencies: int, dim: int, sigma: float) -> None:
        super().__init__()
        if not (1 <= frequencies <= MAX_FREQUENCIES and 1 <= dim <= MAX_PLR_DIM):
            raise ValueError(f"plr frequencies must be in [1, {MAX_FREQUENCIES}] and dim in [1, {MAX_PLR_DIM}], "
                             f"got {frequencies} and {dim}")
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"plr sigma must be a positive number, got {sigma}")
        self.n, self.k, self.dim = n, frequencies, dim
        self.frequencies = nn.Parameter(torch.randn(n, frequencies) * sigma)
        bound = 1 / math.sqrt(2 * frequencies)  # nn.Linear's default init for 2k inputs
        self.weight = nn.Parameter(torch.empty(n, 2 * frequencies, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (2 * math.pi) * x.unsqueeze(-1) * self.frequencies  # (N, n, k)
        periodic = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)  # (N, n, 2k)
        # einsum (ONNX Einsum), not a batched MatMul: ONNX Runtime's INT8 quantizers would turn a MatMul
        # with a 3-D weight into a quantized MatMul it cannot run (per-feature zero points)
        out = torch.einsum("bnk,nkd->bnd", periodic, self.weight) + self.bias  # (N, n, dim)
        return torch.relu(out).reshape(-1, self.n * self.dim)


class TabularInput(nn.Module):
    """Base of the tabular modules: ``init_input(arch)`` makes the input layer and
    ``input_features(x)`` turns encoded rows (N, F) into (N, ``in_features``): [numeric embeddings,
    the other dense columns, categorical embeddings] with PLR, or [dense columns, categorical
    embeddings] without.

    Its layers are attributes of the model itself (``embeddings``, ``plr``), the names the MLP had
    before this class existed, so older MLP checkpoints load unchanged."""

    def init_input(self, arch: Arch) -> int:
        """Create the input layers of ``arch``; returns the feature width they produce."""
        self.num_dense = int(arch["num_dense"])
        self.embeddings = nn.ModuleList(nn.Embedding(int(n), int(d)) for n, d in arch["embeddings"])
        self.target_mean = float(arch.get("target_mean", 0.0))
        self.target_std = float(arch.get("target_std", 1.0))
        plr = arch.get("plr")
        width = self.num_dense + sum(int(d) for _, d in arch["embeddings"])
        self.plr: PeriodicEmbedding | None = None
        if plr:
            index = [int(i) for i in plr["index"]]
            if not index or len(set(index)) != len(index) or not all(0 <= i < self.num_dense for i in index):
                raise ValueError(f"plr index must list distinct dense positions in [0, {self.num_dense})")
            other = [i for i in range(self.num_dense) if i not in set(index)]
            self.register_buffer("numeric_index", torch.tensor(index, dtype=torch.long), persistent=False)
            self.register_buffer("other_index", torch.tensor(other, dtype=torch.long), persistent=False)
            self.plr = PeriodicEmbedding(len(index), int(plr["frequencies"]), int(plr["dim"]), float(plr["sigma"]))
            width += len(index) * (int(plr["dim"]) - 1)
        if width < 1:
            raise ValueError("the model has no input features")
        self.in_features = width
        return width

    def input_features(self, x: torch.Tensor) -> torch.Tensor:
        dense = x[:, : self.num_dense]
        if self.plr is not None:
            parts = [self.plr(dense.index_select(1, self.numeric_index))]
            if len(self.other_index):
                parts.append(dense.index_select(1, self.other_index))
        else:
            parts = [dense]
        for i, emb in enumerate(self.embeddings):
            ids = x[:, self.num_dense + i].long().clamp(0, emb.num_embeddings - 1)
            parts.append(emb(ids))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def destandardise(self, out: torch.Tensor) -> torch.Tensor:
        """A regression head's standardised output in the target's own units (identity otherwise)."""
        if self.target_std != 1.0 or self.target_mean != 0.0:
            return out * self.target_std + self.target_mean
        return out

    def input_layers(self) -> list[nn.Module | nn.Parameter]:
        """What pruning must keep whole: the categorical embeddings and the numeric embedding's
        parameters (Torch-Pruning takes parameters in ``ignored_layers`` as ignored parameters)."""
        return [*self.embeddings, *(self.plr.parameters() if self.plr is not None else [])]


def check_widths(name: str, widths: list[int], limit: int = 1 << 16) -> list[int]:
    """``widths`` as ints in [1, limit]; ValueError naming ``name`` otherwise (arches come from files)."""
    out = [int(w) for w in widths]
    if not all(1 <= w <= limit for w in out):
        raise ValueError(f"{name} must be in [1, {limit}], got {out}")
    return out
