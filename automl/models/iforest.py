"""Isolation forests for the anomaly task: scikit-learn's IsolationForest, held as tensors (family
``iforest``), and the task's classic reference (``isolation_forest_reference``).

Built the way ``hgb`` and ``rf`` are: the search fits the estimator directly on the encoded training
matrix (``fit_direct``), then converts the fitted trees into ``IForest``, an ``nn.Module`` whose whole
state is buffers (``automl/models/_trees.py``: per tree and node the split feature, the threshold,
the two children, where a missing value goes, and a per-node value), so best.pt stays
``weights_only``, the module exports to ONNX with a dynamic batch, and ``serve`` / ``predict`` need
nothing new.

Score: a leaf's value is scikit-learn's path length through it, ``depth + c(n_leaf) - 1`` (``depth``
from ``Tree.compute_node_depths``, 1 at the root; ``n_leaf`` the training rows of the tree's
subsample that reached the leaf; ``c(n)`` the average path length of an unsuccessful search in a
binary search tree of ``n`` keys, ``c(n) = 2 (ln(n - 1) + gamma) - 2 (n - 1) / n``, ``c(2) = 1``,
``c(n <= 1) = 0``). ``forward`` sums the trees' leaf values in float64 and returns
``2 ** (-sum / (trees * c(max_samples)))`` as float32: shape (N,), higher = more anomalous, equal to
``-IsolationForest.score_samples`` (measured: at most 6e-8 apart, the float32 rounding of the output).

Inputs: the encoded table's columns, or an image's pixels (an image bundle is flattened to N x CHW
rows, in ``fit_direct`` and in ``forward``). Features: with ``max_features < 1`` each tree was
fitted on its own subset of the columns (``estimators_features_``); the converter writes the global
column number into the tree's table, so the walk reads the full row. Missing values follow each
split's ``missing_go_to_left``, as scikit-learn's trees do (scikit-learn 1.9, installed here, fits
and scores an IsolationForest on rows with NaN). In a search the tabular preprocessing imputes
missing values (training mean plus a 0/1 indicator column), so no NaN reaches the module there.

Size: a tree fitted on ``max_samples`` rows has at most ``2 max_samples - 1`` nodes and depth
``ceil(log2(max_samples))``; ``max_samples`` is at most ``MAX_SAMPLES`` and trees x nodes must fit
``MAX_TOTAL_NODES``, both before a fit starts and before a stored arch is built.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from automl.exceptions import DeadlineReached
from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models._trees import TreeTables, arch_int, pack_trees

if TYPE_CHECKING:
    from collections.abc import Callable

    from sklearn.ensemble import IsolationForest
    from torch import nn

    from automl.data.bundle import DataBundle

#: bounds on what a model file may ask ``build`` to allocate: a node costs 33 bytes of buffers (int64
#: feature and child, float32 threshold, bool, float64 value), so at most about 130 MB
MAX_TREES = 10_000
MAX_SAMPLES = 1 << 16  # rows a tree is fitted on
MAX_NODES = 2 * MAX_SAMPLES - 1  # per tree
MAX_TOTAL_NODES = 4_000_000  # trees x padded nodes
MAX_DEPTH = 64  # levels walked by forward; a fitted tree has at most ceil(log2(MAX_SAMPLES)) = 16
MAX_FEATURES = 10_000_000
#: trees fitted between two looks at the deadline (scikit-learn cannot stop mid-fit, so the fit
#: continues with ``warm_start`` in chunks: the same trees as one fit)
CHUNK = 25

#: sampled parameter -> IsolationForest argument
PARAMS = {
    "iforest_n_estimators": "n_estimators",
    "iforest_max_samples": "max_samples",
    "iforest_max_features": "max_features",
    "iforest_bootstrap": "bootstrap",
}


def average_path_length(n: np.ndarray | float) -> np.ndarray:
    """``c(n)``: the average path length of an unsuccessful search in a binary search tree of ``n``
    keys (Liu et al. 2008), float64; 0 for ``n <= 1`` and 1 for ``n = 2``."""
    n = np.asarray(n, np.float64)
    safe = np.where(n > 2, n, 3.0)
    return np.where(n <= 1, 0.0, np.where(n == 2, 1.0, 2.0 * (np.log(safe - 1.0) + np.euler_gamma)
                                          - 2.0 * (safe - 1.0) / safe))


def _int(arch: Arch, key: str, lo: int, hi: int) -> int:
    return arch_int("iforest", arch, key, lo, hi)


def check_size(name: str, trees: int, nodes: int) -> None:
    """ValueError unless ``trees`` trees of ``nodes`` nodes fit the bounds above."""
    if trees > MAX_TREES or nodes > MAX_NODES or trees * nodes > MAX_TOTAL_NODES:
        raise ValueError(f"{name}: {trees} trees of {nodes} nodes exceed the limit ({MAX_TREES} trees, "
                         f"{MAX_NODES} nodes a tree, {MAX_TOTAL_NODES} nodes in all)")


def check_arch(arch: Arch) -> Arch:
    """The arch's sizes, checked against the bounds above before anything is allocated; ValueError
    (KeyError for a missing key) otherwise."""
    sizes = {
        "num_features": _int(arch, "num_features", 1, MAX_FEATURES),
        "n_trees": _int(arch, "n_trees", 1, MAX_TREES),
        "n_nodes": _int(arch, "n_nodes", 1, MAX_NODES),
        "depth": _int(arch, "depth", 0, MAX_DEPTH),
        "max_samples": _int(arch, "max_samples", 1, MAX_SAMPLES),
    }
    check_size("iforest arch", sizes["n_trees"], sizes["n_nodes"])
    if sizes["depth"] >= sizes["n_nodes"]:
        raise ValueError(f"iforest arch: depth {sizes['depth']} needs more than {sizes['n_nodes']} nodes")
    return sizes


class IForest(TreeTables):
    """An isolation forest as padded tensor tables (``automl/models/_trees.py``) whose leaves hold
    float64 path lengths; forward gives the anomaly score (see the module docstring)."""

    def __init__(self, arch: Arch) -> None:
        s = check_arch(arch)
        super().__init__("iforest", s["n_trees"], s["n_nodes"], s["depth"], s["num_features"])
        # scikit-learn's denominator; 0 (a forest of one-row trees) makes every score 1, as there
        self.denominator = float(s["n_trees"] * average_path_length(s["max_samples"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        node = self.leaves(torch.flatten(x, 1))  # an image (N, C, H, W) is scored as its N x CHW pixels
        depths = self.value.index_select(0, node).reshape(-1, self.trees).sum(1)
        if self.denominator == 0.0:
            return torch.ones_like(depths, dtype=torch.float32)
        return torch.exp(depths * (-math.log(2.0) / self.denominator)).float()


def iforest_from_sklearn(est: IsolationForest, num_features: int) -> tuple[Arch, dict[str, torch.Tensor]]:
    """A fitted IsolationForest -> (arch, state_dict) of ``IForest``; ValueError when it is not one this
    converter reads (not fitted, another number of columns, a forest over the size bounds)."""
    trees = getattr(est, "estimators_", None)
    if not trees:
        raise ValueError("not a fitted IsolationForest (no estimators_)")
    if int(getattr(est, "n_features_in_", -1)) != num_features:
        raise ValueError(f"the IsolationForest was fitted on {getattr(est, 'n_features_in_', '?')} columns, "
                         f"not {num_features}")
    n = max(int(t.tree_.node_count) for t in trees)
    arch = {"family": "iforest", "num_features": int(num_features), "n_trees": len(trees), "n_nodes": n,
            "depth": max(int(t.tree_.max_depth) for t in trees), "max_samples": int(est.max_samples_)}
    check_arch(arch)
    nodes = []
    for t, feats in zip(trees, est.estimators_features_, strict=True):
        tr = t.tree_
        is_leaf = tr.children_left == -1
        # a tree fitted on a subset of the columns numbers them within the subset
        cols = np.asarray(feats, np.int64) if int(t.n_features_in_) != num_features else np.arange(num_features)
        feature = np.where(is_leaf, 0, cols[np.maximum(tr.feature, 0)])
        value = tr.compute_node_depths().astype(np.float64) + average_path_length(tr.n_node_samples) - 1.0
        nodes.append({"is_leaf": is_leaf, "left": tr.children_left, "right": tr.children_right,
                      "feature": feature, "threshold": tr.threshold,
                      "missing_go_to_left": tr.missing_go_to_left, "value": value})
    state = pack_trees(nodes, n)
    return arch, state


def estimator_kwargs(params: Params, seed: int, n_rows: int) -> dict[str, int | float | str | bool]:
    """Sampled ``iforest_*`` parameters -> IsolationForest keyword arguments (scikit-learn's defaults
    for the ones not sampled: 100 trees, ``max_samples`` "auto" = min(256, rows), all features, no
    bootstrap); ``max_samples`` is resolved to a row count here, at most ``min(rows, MAX_SAMPLES)``.
    ValueError for a value scikit-learn would not take."""
    kw: dict[str, int | float | str | bool] = {"random_state": int(seed) % (2**32), "n_estimators": 100,
                                               "max_samples": "auto", "max_features": 1.0, "bootstrap": False}
    for name, arg in PARAMS.items():
        if params.get(name) is not None:
            kw[arg] = params[name]
    trees, samples, feats = kw["n_estimators"], kw["max_samples"], kw["max_features"]
    if isinstance(trees, bool) or not isinstance(trees, (int, float)) or int(trees) != trees or \
            not 1 <= trees <= MAX_TREES:
        raise ValueError(f"iforest n_estimators must be an integer in [1, {MAX_TREES}], got {str(trees)[:40]}")
    kw["n_estimators"] = int(trees)
    if samples == "auto":
        samples = 256
    if isinstance(samples, bool) or not isinstance(samples, (int, float)) or int(samples) != samples or samples < 1:
        raise ValueError(f"iforest max_samples must be 'auto' or a positive integer, got {str(samples)[:40]}")
    kw["max_samples"] = max(1, min(int(samples), n_rows, MAX_SAMPLES))  # scikit-learn would warn, then cap
    if isinstance(feats, bool) or not isinstance(feats, (int, float)) or not 0.0 < float(feats) <= 1.0:
        raise ValueError(f"iforest max_features must be a fraction in (0, 1], got {str(feats)[:40]}")
    kw["max_features"] = float(feats)
    if not isinstance(kw["bootstrap"], bool):
        raise ValueError(f"iforest bootstrap must be true or false, got {str(kw['bootstrap'])[:40]}")
    return kw


def fit_iforest(x: np.ndarray, kw: dict[str, int | float | str | bool], deadline: float | None = None,
                clock: Callable[[], float] = time.monotonic) -> IsolationForest:
    """Fit an IsolationForest in chunks of ``CHUNK`` trees (``warm_start``: the same trees as one fit),
    looking at ``deadline`` (a ``clock()`` value) before each: DeadlineReached when it has passed."""
    from sklearn.ensemble import IsolationForest

    kw = dict(kw)
    total = int(kw.pop("n_estimators", 100))
    est = IsolationForest(warm_start=True, n_estimators=min(CHUNK, total), n_jobs=1, **kw)
    while True:
        if deadline is not None and clock() >= deadline:
            raise DeadlineReached(0)
        est.fit(x)
        if est.n_estimators >= total:
            return est
        est.set_params(n_estimators=min(est.n_estimators + CHUNK, total))


def fit_reference(x_train: np.ndarray, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """The anomaly task's classic reference, fitted: scikit-learn's IsolationForest with its defaults
    (``random_state=seed``) on exactly the rows of ``x_train`` (2-D; scikit-learn casts them to float32
    and accepts NaN). Returns rows -> anomaly scores (``-score_samples``: higher = more anomalous),
    float64 of shape (rows,)."""
    from sklearn.ensemble import IsolationForest

    est = IsolationForest(random_state=int(seed) % (2**32)).fit(np.asarray(x_train))
    return lambda x: -est.score_samples(np.asarray(x))


def isolation_forest_reference(x_train: np.ndarray, x_eval: np.ndarray, seed: int = 0) -> np.ndarray:
    """``fit_reference(x_train, seed)`` applied to ``x_eval``: the reference's anomaly scores of
    ``x_eval`` (``-score_samples``), float64 of shape (len(x_eval),)."""
    return fit_reference(x_train, seed)(x_eval)


@register_model("iforest")
class IsolationForestFamily(ModelFamily):
    """scikit-learn's IsolationForest, fitted directly (``fit_direct``) on the training rows and held
    as tensors; outputs one anomaly score per row."""

    tasks = ("anomaly",)
    params = frozenset(PARAMS)
    limits = {"iforest_n_estimators": (1, MAX_TREES), "iforest_max_samples": (1, MAX_SAMPLES)}
    direct_fit = True
    prune_unsupported = "channel pruning does not apply to a tree ensemble (it has no channels)"
    quantize_unsupported = (
        "INT8/FP16 quantization does not apply to a tree ensemble (rounded thresholds would move its splits)")

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        """The arch of the *unfitted* forest (one single-leaf tree of value 0, score 1): the fitted
        one's sizes are known only after ``fit_direct``, which returns its own arch. Inputs: the
        encoded table's columns, or an image's pixels (``input_shape`` multiplied out)."""
        spec = meta.get("preprocess", {})
        features = int(spec["num_features"]) if "num_features" in spec else math.prod(meta["input_shape"])
        return {"family": "iforest", "num_features": features, "n_trees": 1, "n_nodes": 1, "depth": 0,
                "max_samples": 1}

    def build(self, arch: Arch) -> nn.Module:
        return IForest(arch)

    def fit_direct(self, params: Params, bundle: DataBundle, *, seed: int,
                   deadline: float | None = None) -> tuple[nn.Module, Arch]:
        num_features = self.arch_from_params(params, bundle.meta)["num_features"]
        x = torch.flatten(bundle.x_train.detach().cpu(), 1).numpy().astype(np.float32, copy=False)
        if len(x) < 1:
            raise ValueError("an isolation forest needs at least one training row")
        kw = estimator_kwargs(params, seed, len(x))
        # bounded before any work: trees x (2 x rows a tree - 1) nodes
        check_size("iforest with these parameters", int(kw["n_estimators"]), 2 * int(kw["max_samples"]) - 1)
        est = fit_iforest(x, kw, deadline)
        arch, state = iforest_from_sklearn(est, num_features)
        model = IForest(arch)
        model.load_state_dict(state, strict=True)
        return model.eval(), arch
