"""Random forests and extra trees for the tabular task: scikit-learn's RandomForest / ExtraTrees,
held as tensors (families ``rf`` and ``extratrees``).

Built the way ``hgb`` is: the search fits the estimator directly on the encoded training matrix
(``fit_direct``), then converts the fitted trees into ``Forest``, an ``nn.Module`` whose whole state is
buffers (``automl/models/_trees.py``: per tree and node the split feature, the threshold, the two
children, where a missing value goes, and the leaf's values), so best.pt stays ``weights_only``, the
module exports to ONNX with a dynamic batch, and ``serve`` / ``predict`` need nothing new.

Outputs follow scikit-learn's ``predict_proba`` / ``predict``: classification averages the trees'
per-leaf class fractions and returns their logarithm (floored at ``PROB_FLOOR``, so softmax gives the
averaged probabilities back and the cross-entropy stays finite); regression averages the leaf values,
in the target's own units (the trees are fitted on the target as it is). Leaf values are stored as
float32 and averaged in float64.

Size: an unlimited forest on a large table has millions of nodes (100 trees of 40k nodes on a 40k-row
table). Every fit is bounded before it starts: ``max_leaf_nodes`` is always set (``DEFAULT_LEAVES``
when not sampled) and ``max_depth`` always at most ``FIT_MAX_DEPTH``, and trees x nodes x outputs
must fit the bounds below; a stored arch is checked against the same bounds before anything is built.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from automl.exceptions import DeadlineReached
from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models._trees import TreeTables, arch_int, pack_trees

if TYPE_CHECKING:
    from collections.abc import Callable

    from sklearn.ensemble._forest import BaseForest
    from torch import nn

    from automl.data.bundle import DataBundle

KINDS = ("classification", "regression")
#: bounds on what a model file may ask ``build`` to allocate: a node costs 21 bytes of tables plus 4
#: bytes per output of leaf values (at most 4M x 21 + 32M x 4 bytes, about 210 MB)
MAX_TREES = 10_000
MAX_NODES = 1 << 17  # per tree
MAX_TOTAL_NODES = 4_000_000  # trees x padded nodes
MAX_VALUES = 32_000_000  # trees x padded nodes x outputs
MAX_DEPTH = 256  # levels walked by forward (each a few ONNX nodes)
MAX_FEATURES = 10_000_000
MAX_OUTPUTS = 100_000
#: what a fit gets when the space does not say: leaves per tree (4096 leaves: 8191 nodes; on a
#: 38k-row table it fits as well as unlimited trees, measured on diamonds) and the deepest level
DEFAULT_LEAVES = 4096
FIT_MAX_DEPTH = 64
#: trees fitted between two looks at the deadline (scikit-learn cannot stop mid-fit, so the fit
#: continues with ``warm_start`` in chunks; a tree of 4096 leaves takes about 0.15 s on 38k rows)
CHUNK = 10
#: the smallest probability whose logarithm a classifier outputs (softmax then differs from the
#: averaged probabilities by at most classes x 1e-9)
PROB_FLOOR = 1e-9
#: string values of ``forest_max_features``; "default" is scikit-learn's default for the problem
#: (sqrt of the features for classification, all of them for regression)
MAX_FEATURES_NAMES = ("default", "sqrt", "log2")

#: sampled parameter -> scikit-learn argument
PARAMS = {
    "forest_n_estimators": "n_estimators",
    "forest_max_depth": "max_depth",
    "forest_max_leaf_nodes": "max_leaf_nodes",
    "forest_min_samples_leaf": "min_samples_leaf",
    "forest_max_features": "max_features",
}


_int = arch_int  # (family name, arch, key, lo, hi)


def check_size(name: str, trees: int, nodes: int, outputs: int) -> None:
    """ValueError unless ``trees`` trees of ``nodes`` nodes with ``outputs`` values a node fit the bounds."""
    if trees > MAX_TREES or nodes > MAX_NODES or trees * nodes > MAX_TOTAL_NODES or \
            trees * nodes * outputs > MAX_VALUES:
        raise ValueError(f"{name}: {trees} trees of {nodes} nodes ({outputs} value(s) a node) exceed the limit "
                         f"({MAX_TREES} trees, {MAX_NODES} nodes a tree, {MAX_TOTAL_NODES} nodes and "
                         f"{MAX_VALUES} values in all)")


def check_arch(arch: Arch) -> Arch:
    """The arch's sizes, checked against the bounds above before anything is allocated; ValueError
    (KeyError for a missing key) otherwise."""
    name = str(arch.get("family", "forest"))[:20]
    kind = arch["kind"]
    if kind not in KINDS:
        raise ValueError(f"{name} arch 'kind' must be one of {', '.join(KINDS)}, got {str(kind)[:40]}")
    sizes = {
        "num_features": _int(name, arch, "num_features", 1, MAX_FEATURES),
        "out_features": _int(name, arch, "out_features", 1, MAX_OUTPUTS),
        "n_trees": _int(name, arch, "n_trees", 1, MAX_TREES),
        "n_nodes": _int(name, arch, "n_nodes", 1, MAX_NODES),
        "depth": _int(name, arch, "depth", 0, MAX_DEPTH),
    }
    out = sizes["out_features"]
    if (kind == "regression") != (out == 1):
        raise ValueError(f"{name} arch: a {kind} forest cannot have {out} outputs")
    check_size(f"{name} arch", sizes["n_trees"], sizes["n_nodes"], out)
    if sizes["depth"] >= sizes["n_nodes"]:
        raise ValueError(f"{name} arch: depth {sizes['depth']} needs more than {sizes['n_nodes']} nodes")
    return {**sizes, "kind": kind}


class Forest(TreeTables):
    """A forest as padded tensor tables (``automl/models/_trees.py``) with ``out_features`` float32
    values per node; forward averages the trees' leaf values (see the module docstring)."""

    def __init__(self, arch: Arch) -> None:
        s = check_arch(arch)
        super().__init__(str(arch["family"])[:20], s["n_trees"], s["n_nodes"], s["depth"], s["num_features"],
                         value_width=s["out_features"], value_dtype=torch.float32)
        self.kind, self.out_features = s["kind"], s["out_features"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        node = self.leaves(x)
        mean = self.value.index_select(0, node).double().reshape(-1, self.trees, self.out_features).mean(1)
        if self.kind == "regression":
            return mean.float()
        return torch.log(mean.clamp_min(PROB_FLOOR)).float()


def forest_from_sklearn(est: BaseForest, name: str, num_features: int,
                        out_features: int) -> tuple[Arch, dict[str, torch.Tensor]]:
    """A fitted RandomForest / ExtraTrees classifier or regressor -> (arch, state_dict) of ``Forest``;
    ValueError when it is not one this converter reads (several outputs, classes outside the model's)."""
    trees = getattr(est, "estimators_", None)
    if not trees:
        raise ValueError("not a fitted forest (no estimators_)")
    if getattr(est, "n_outputs_", 1) != 1:
        raise ValueError("forests of several outputs are not supported")
    classes = getattr(est, "classes_", None)
    kind = "regression" if classes is None else "classification"
    if classes is not None:
        cols = np.asarray(classes).astype(np.int64)
        if cols.min() < 0 or cols.max() >= out_features:
            raise ValueError(f"the forest's classes {cols.tolist()[:5]} are not ids of the {out_features} classes")
    n = max(int(t.tree_.node_count) for t in trees)
    arch = {"family": name, "kind": kind, "num_features": int(num_features), "out_features": int(out_features),
            "n_trees": len(trees), "n_nodes": n, "depth": max(int(t.tree_.max_depth) for t in trees)}
    check_arch(arch)
    nodes = []
    for t in trees:
        tr = t.tree_
        raw = np.asarray(tr.value[:, 0, :], np.float64)  # (nodes, classes): fractions (or counts), or the mean
        if kind == "classification":
            total = raw.sum(1, keepdims=True)
            value = np.zeros((len(raw), out_features), np.float64)
            value[:, cols] = raw / np.where(total > 0, total, 1.0)  # predict_proba's normalisation
        else:
            value = raw[:, :1]
        nodes.append({"is_leaf": tr.children_left == -1, "left": tr.children_left, "right": tr.children_right,
                      "feature": tr.feature, "threshold": tr.threshold,
                      "missing_go_to_left": tr.missing_go_to_left, "value": value})
    state = pack_trees(nodes, n, value_width=out_features, value_dtype=np.float32)
    if int(state["feature"].max()) >= num_features:
        raise ValueError(f"the forest splits on column {int(state['feature'].max())} of {num_features}")
    return arch, state


def estimator_kwargs(params: Params, seed: int, regression: bool) -> dict[str, int | float | str | None]:
    """Sampled ``forest_*`` parameters -> scikit-learn keyword arguments: scikit-learn's defaults for
    the ones not sampled, except that ``max_leaf_nodes`` and ``max_depth`` are always bounded
    (``DEFAULT_LEAVES``, ``FIT_MAX_DEPTH``); ValueError for a value scikit-learn would not take."""
    kw: dict[str, int | float | str | None] = {"random_state": int(seed) % (2**32), "n_estimators": 100,
                                               "min_samples_leaf": 1, "max_features": "default"}
    for name, arg in PARAMS.items():
        if params.get(name) is not None:
            kw[arg] = params[name]
    for arg in ("n_estimators", "max_leaf_nodes", "max_depth", "min_samples_leaf"):
        if kw.get(arg) is not None:
            v = kw[arg]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 1:
                raise ValueError(f"forest {arg} must be a positive integer, got {str(v)[:40]}")
            kw[arg] = int(v)
    kw["max_leaf_nodes"] = min(int(kw.get("max_leaf_nodes") or DEFAULT_LEAVES), (MAX_NODES + 1) // 2)
    kw["max_depth"] = min(int(kw.get("max_depth") or FIT_MAX_DEPTH), MAX_DEPTH)
    if kw["max_leaf_nodes"] < 2:
        raise ValueError("forest max_leaf_nodes must be at least 2")
    feats = kw["max_features"]
    if feats == "default":
        kw["max_features"] = 1.0 if regression else "sqrt"
    elif isinstance(feats, bool) or not (
            feats in MAX_FEATURES_NAMES or (isinstance(feats, float) and 0.0 < feats <= 1.0)
            or (isinstance(feats, int) and feats >= 1)):
        raise ValueError(f"forest max_features must be one of {', '.join(MAX_FEATURES_NAMES)}, a fraction in "
                         f"(0, 1] or a count, got {str(feats)[:40]}")
    return kw


def fit_forest(cls: type[BaseForest], x: np.ndarray, y: np.ndarray, kw: dict[str, int | float | str | None],
               deadline: float | None = None, clock: Callable[[], float] = time.monotonic) -> BaseForest:
    """Fit ``cls`` in chunks of ``CHUNK`` trees (``warm_start``: the same trees as one fit), looking at
    ``deadline`` (a ``clock()`` value, ``time.monotonic`` by default) before each: DeadlineReached when
    it has passed."""
    from threadpoolctl import threadpool_limits

    kw = dict(kw)
    total = int(kw.pop("n_estimators", 100))
    est = cls(warm_start=True, n_estimators=min(CHUNK, total), n_jobs=1, **kw)
    # one thread, as hgb: scikit-learn's OpenMP pool would fight PyTorch's still-spinning one
    with threadpool_limits(limits=1, user_api="openmp"):
        while True:
            if deadline is not None and clock() >= deadline:
                raise DeadlineReached(0)
            with warnings.catch_warnings():  # class_weight="balanced" with warm_start: the same rows each chunk
                warnings.filterwarnings("ignore", message=".*class_weight presets.*")
                est.fit(x, y)
            if est.n_estimators >= total:
                return est
            est.set_params(n_estimators=min(est.n_estimators + CHUNK, total))


class _ForestFamily(ModelFamily):
    """What ``rf`` and ``extratrees`` share; a subclass names its scikit-learn estimators."""

    tasks = ("tabular",)
    params = frozenset(PARAMS)
    #: a tree of L leaves has 2L - 1 nodes (MAX_NODES per tree); 10^9 rows per leaf is no bound in practice
    limits = {"forest_n_estimators": (1, MAX_TREES), "forest_max_leaf_nodes": (2, (MAX_NODES + 1) // 2),
              "forest_max_depth": (1, MAX_DEPTH), "forest_min_samples_leaf": (1, 10**9)}
    direct_fit = True
    prune_unsupported = "channel pruning does not apply to a tree ensemble (it has no channels)"
    quantize_unsupported = (
        "INT8/FP16 quantization does not apply to a tree ensemble (rounded thresholds would move its splits)")
    #: scikit-learn class names (classifier, regressor) in ``sklearn.ensemble``
    estimators: ClassVar[tuple[str, str]] = ("", "")

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        """The arch of the *unfitted* forest (one single-leaf tree of value 0): the fitted one's sizes
        are known only after ``fit_direct``, which returns its own arch."""
        regression = meta.get("problem") == "regression"
        return {"family": self.name, "kind": "regression" if regression else "classification",
                "num_features": int(meta["preprocess"]["num_features"]),
                "out_features": 1 if regression else int(meta["num_classes"]), "n_trees": 1, "n_nodes": 1, "depth": 0}

    def build(self, arch: Arch) -> nn.Module:
        return Forest(arch)

    def fit_direct(self, params: Params, bundle: DataBundle, *, seed: int,
                   deadline: float | None = None) -> tuple[nn.Module, Arch]:
        import sklearn.ensemble

        unfitted = self.arch_from_params(params, bundle.meta)
        regression = unfitted["kind"] == "regression"
        kw = estimator_kwargs(params, seed, regression)
        if (bundle.meta.get("fit") or {}).get("class_weight") == "balanced" and not regression:
            kw["class_weight"] = "balanced"  # --class-weight balanced
        # bounded before any work: trees x (2 x leaves - 1) nodes x outputs, and the walk's depth
        nodes = min(2 * int(kw["max_leaf_nodes"]) - 1, 2 ** (int(kw["max_depth"]) + 1) - 1)
        check_size(f"{self.name} with these parameters", int(kw["n_estimators"]), nodes,
                   unfitted["out_features"])
        x = bundle.x_train.detach().cpu().numpy().astype(np.float32, copy=False)
        y = bundle.y_train.detach().cpu().numpy()
        cls = getattr(sklearn.ensemble, self.estimators[1 if regression else 0])
        est = fit_forest(cls, x, y, kw, deadline)
        arch, state = forest_from_sklearn(est, self.name, unfitted["num_features"], unfitted["out_features"])
        model = Forest(arch)
        model.load_state_dict(state, strict=True)
        return model.eval(), arch


@register_model("rf")
class RandomForestFamily(_ForestFamily):
    """scikit-learn's RandomForestClassifier / Regressor (bootstrap rows, best split of a feature
    sample), fitted directly and held as tensors."""

    estimators = ("RandomForestClassifier", "RandomForestRegressor")


@register_model("extratrees")
class ExtraTreesFamily(_ForestFamily):
    """scikit-learn's ExtraTreesClassifier / Regressor (all rows, random thresholds), fitted directly
    and held as tensors."""

    estimators = ("ExtraTreesClassifier", "ExtraTreesRegressor")
