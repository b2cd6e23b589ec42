"""What the tree families (``hgb``, ``rf``, ``extratrees``) share: a tree ensemble held as padded
tensor tables, walked for every row and tree at once, and the packing of fitted scikit-learn trees
into those tables.

Layout: ``trees x n_nodes`` tables flattened to one axis. Each tree's nodes are numbered breadth
first, so a split's right child follows its left child and a step is ``left[node] + goes_right``; a
leaf's ``left`` is itself and its threshold +inf, so a row that reached one stays there. Tree ends are
padded with such leaves. ``TreeTables.leaves`` walks a fixed number of levels (the deepest leaf's
depth), one gather per level, so the module exports to ONNX with a dynamic batch.

Exactness: a split sends ``x`` left when ``x <= threshold`` (NaN: the node's ``missing_go_to_left``),
as every scikit-learn tree does. Inputs are float32, so each float64 threshold is stored as the
largest float32 not above it, which makes the float32 comparison decide exactly as scikit-learn's
float64 one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from torch.nn.modules.module import _IncompatibleKeys


class TreeTables(nn.Module):
    """Buffers ``feature``, ``threshold``, ``left``, ``nan_right`` and ``value`` of ``trees`` trees of
    ``n_nodes`` nodes each (see the module docstring); only buffers, no parameters. ``value`` holds
    ``value_width`` numbers per node (0: one number, a 1-D table). ``name`` starts error messages."""

    def __init__(self, name: str, trees: int, n_nodes: int, depth: int, num_features: int,
                 value_width: int = 0, value_dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.table_name, self.trees, self.depth, self.num_features = name, trees, depth, num_features
        size = trees * n_nodes
        # an empty ensemble: every node a leaf of value 0 pointing at itself
        self.register_buffer("feature", torch.zeros(size, dtype=torch.int64))
        self.register_buffer("threshold", torch.full((size,), float("inf"), dtype=torch.float32))
        self.register_buffer("left", torch.arange(size, dtype=torch.int64))
        self.register_buffer("nan_right", torch.zeros(size, dtype=torch.bool))  # a missing value goes right
        shape = (size, value_width) if value_width else (size,)
        self.register_buffer("value", torch.zeros(shape, dtype=value_dtype))
        self.register_buffer("roots", torch.arange(trees, dtype=torch.int64) * n_nodes, persistent=False)

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Load, then check that every index stays inside its table (a model file may come from
        anywhere): RuntimeError, which the loaders report as weights that do not match."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        name, size = self.table_name, self.left.numel()
        if int(self.left.min()) < 0 or int(self.left.max()) > size - 1:
            raise RuntimeError(f"{name} buffer 'left' points outside the {size} nodes")
        last = self.left == size - 1  # a step right from there would leave the table: it must never move
        if bool((self.threshold[last] != float("inf")).any() or self.nan_right[last].any()):
            raise RuntimeError(f"{name} buffers: a node at the end of the table can move right")
        if int(self.feature.min()) < 0 or int(self.feature.max()) >= self.num_features:
            raise RuntimeError(f"{name} buffer 'feature' names a column outside the {self.num_features} inputs")
        return result

    def leaves(self, x: torch.Tensor) -> torch.Tensor:
        """The leaf each row reaches in each tree: node ids, shape (batch x trees,), row-major."""
        x = x.float()
        node = self.roots.unsqueeze(0).expand(x.shape[0], -1).reshape(-1)  # every row at every root
        for _ in range(self.depth):
            values = torch.gather(x, 1, self.feature.index_select(0, node).reshape(-1, self.trees)).reshape(-1)
            right = (values > self.threshold.index_select(0, node)) | (
                torch.isnan(values) & self.nan_right.index_select(0, node))
            node = self.left.index_select(0, node) + right.long()
        return node


def arch_int(family: str, arch: Mapping[str, object], key: str, lo: int, hi: int) -> int:
    """``arch[key]`` of a tree family's stored arch, an integer in [lo, hi] (never a bool); ValueError
    naming ``family`` otherwise (KeyError for a missing key): checked before anything is allocated."""
    v = arch[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{family} arch '{key}' must be an integer in [{lo}, {hi}], got {str(v)[:40]}")
    return v


def float32_floor(t: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 (infinities stay): ``x <= t`` for a float32 ``x``
    then decides the same in float32 as in float64."""
    t32 = t.astype(np.float32)
    above = t32.astype(np.float64) > t
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def breadth_first(nd: Mapping[str, np.ndarray]) -> np.ndarray:
    """Old node ids in their new order: breadth first, so the two children of a split are neighbours."""
    is_leaf, left, right = nd["is_leaf"], nd["left"], nd["right"]
    order, i = [0], 0
    while i < len(order):
        k = order[i]
        if not is_leaf[k]:
            order += [int(left[k]), int(right[k])]
        i += 1
    return np.asarray(order, dtype=np.int64)


def pack_trees(nodes: Sequence[Mapping[str, np.ndarray]], n: int, value_width: int = 0,
               value_dtype: type = np.float64) -> dict[str, torch.Tensor]:
    """Fitted trees -> the ``TreeTables`` buffers (a state_dict part), each tree padded to ``n`` nodes.

    Each tree is a mapping of per-node arrays: ``is_leaf``, ``left``, ``right`` (child ids, anything
    at leaves), ``feature``, ``threshold`` (float64), ``missing_go_to_left`` and ``value`` (one number
    per node, or ``value_width`` numbers per node); splits' values are dropped."""
    t = len(nodes)
    feature = np.zeros((t, n), np.int64)
    threshold = np.full((t, n), np.inf, np.float32)
    left = np.arange(t * n, dtype=np.int64).reshape(t, n)
    nan_right = np.zeros((t, n), bool)
    value = np.zeros((t, n, value_width) if value_width else (t, n), value_dtype)
    for i, nd in enumerate(nodes):
        order = breadth_first(nd)
        new = np.empty(len(order), np.int64)
        new[order] = np.arange(len(order))
        k, split = len(order), ~np.asarray(nd["is_leaf"], bool)[order]
        children = np.asarray(nd["left"], np.int64)[order]
        feature[i, :k] = np.where(split, np.asarray(nd["feature"])[order], 0)
        threshold[i, :k] = np.where(split, float32_floor(np.asarray(nd["threshold"], np.float64)[order]), np.inf)
        left[i, :k] = np.where(split, i * n + new[children * split], left[i, :k])
        nan_right[i, :k] = split & ~np.asarray(nd["missing_go_to_left"], bool)[order]
        v = np.asarray(nd["value"])[order]
        value[i, :k] = np.where(split[:, None], 0.0, v) if value_width else np.where(split, 0.0, v)
    shape = (t * n, value_width) if value_width else (t * n,)
    return {"feature": torch.from_numpy(feature.reshape(-1)), "threshold": torch.from_numpy(threshold.reshape(-1)),
            "left": torch.from_numpy(left.reshape(-1)), "nan_right": torch.from_numpy(nan_right.reshape(-1)),
            "value": torch.from_numpy(value.reshape(shape))}
