"""An efficient ensemble in one model for tabular data, in the spirit of TabM (Gorishniy et al. 2024,
"TabM: Advancing Tabular Deep Learning with Parameter-Efficient Ensembling").

``ensemble_size`` (k) members share every MLP weight matrix; member m's layer computes
``((x * r_m) @ W.T) * s_m + b_m`` (BatchEnsemble adapters: r and s vectors and a bias per member;
the first layer's r are random signs, so the members differ from the start, the others start at 1),
and each member has its own output head. All members see the same batch.

Training and prediction differ on purpose:

- in train mode ``forward`` returns every member's output, (N, k, C) (regression: (N, k, 1), in the
  target's units), and the task's loss (``Task.loss_fn``) takes the mean of the member losses, so
  each member is trained as a model of its own;
- in eval mode (validation, export, serve) it returns the ensemble: for classification the log of
  the mean of the members' softmax probabilities, (N, C), so argmax is the ensemble's vote and a
  softmax downstream gives exactly the mean probabilities; for regression the members' mean, (N, 1).

The input layer (categorical embeddings, optional PLR numeric embeddings) is shared by the members
(``_tabular.py``). Channel pruning is not offered (see ``prune_unsupported``).
"""

from __future__ import annotations

import math

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

MAX_MEMBERS = 256


def tabm_arch(params: Params, meta: Meta) -> Arch:
    """Sampled parameters + tabular metadata -> the plain arch dict: ``depth`` shared layers of
    ``width`` units and ``ensemble_size`` members."""
    depth = int(params.get("depth", 3))
    width = int(params.get("width", 256))
    k = int(params.get("ensemble_size", 32))
    if depth < 1 or width < 1 or not 1 <= k <= MAX_MEMBERS:
        raise ValueError(f"depth and width must be >= 1 and ensemble_size in [1, {MAX_MEMBERS}], "
                         f"got {depth}, {width}, {k}")
    activation = params.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
    regression = meta["preprocess"].get("problem") == "regression"
    return {
        **tabular_base_arch("tabm", params, meta),
        "hidden": [width] * depth,
        "ensemble_size": k,
        "activation": activation,
        "dropout": float(params.get("dropout", 0.1)),
        "regression": regression,
    }


class EnsembleLinear(nn.Module):
    """A linear layer shared by k members with per-member adapters: (N, k, in) -> (N, k, out)."""

    def __init__(self, d_in: int, d_out: int, k: int, random_signs: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=False)
        self.r = nn.Parameter(torch.ones(k, d_in))
        if random_signs:
            with torch.no_grad():
                self.r.bernoulli_(0.5).mul_(2).sub_(1)
        self.s = nn.Parameter(torch.ones(k, d_out))
        bound = 1 / math.sqrt(d_in)
        self.bias = nn.Parameter(torch.empty(k, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.r) * self.s + self.bias


class EnsembleHead(nn.Module):
    """k separate output layers, one a member: (N, k, in) -> (N, k, out)."""

    def __init__(self, d_in: int, d_out: int, k: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(k, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # einsum (ONNX Einsum), not a batched MatMul, which ONNX Runtime's INT8 quantizers cannot run
        return torch.einsum("bki,kio->bko", x, self.weight) + self.bias


class TabM(TabularInput):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        width_in = self.init_input(arch)
        k = int(arch["ensemble_size"])
        if not 1 <= k <= MAX_MEMBERS:
            raise ValueError(f"ensemble_size must be in [1, {MAX_MEMBERS}], got {k}")
        hidden = check_widths("hidden widths", arch["hidden"])
        if not hidden:
            raise ValueError("TabM needs at least one hidden layer")
        dropout = float(arch["dropout"])
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.k = k
        self.regression = bool(arch["regression"])
        self.layers = nn.ModuleList()
        for i, width in enumerate(hidden):
            self.layers.append(EnsembleLinear(width_in, width, k, random_signs=i == 0))
            width_in = width
        self.act = ACTIVATIONS[arch["activation"]]()
        self.drop = nn.Dropout(dropout)
        self.head = EnsembleHead(width_in, int(arch["out_features"]), k)

    def members(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's output, (N, k, C); regression in the target's units."""
        h = self.input_features(x).unsqueeze(1)  # (N, 1, D): broadcast against the k adapters
        for layer in self.layers:
            h = self.drop(self.act(layer(h)))
        return self.destandardise(self.head(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members(x)
        if self.training:
            return out
        if self.regression:
            return out.mean(dim=1)
        # log of the mean member probability: log(1/k * sum_m softmax(z_m))
        return torch.logsumexp(torch.log_softmax(out, dim=-1), dim=1) - math.log(self.k)


@register_model("tabm")
class TabMFamily(ModelFamily):
    """TabM-style ensemble of the tabular task (k members in one model)."""

    tasks = ("tabular",)
    params = frozenset({"depth", "width", "ensemble_size", "dropout", "activation", *NUM_EMBEDDING_PARAMS})
    limits = {**TABULAR_LIMITS, "depth": (1, MAX_TABULAR_DEPTH), "ensemble_size": (1, MAX_MEMBERS)}
    column_lists = COLUMN_LISTS
    prune_unsupported = ("TabM's per-member adapters and heads are plain parameters tied to the shared layers' "
                         "channels, which Torch-Pruning cannot narrow together; a smaller ensemble_size or width "
                         "is the way to a smaller TabM")

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return tabm_arch(params, meta)

    def build(self, arch: Arch) -> nn.Module:
        for key in ("num_dense", "embeddings", "hidden", "ensemble_size", "activation", "dropout", "out_features",
                    "regression"):
            if key not in arch:
                raise KeyError(key)
        return TabM(arch)
