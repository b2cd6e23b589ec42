"""Gradient-boosted trees for the tabular task: scikit-learn's HistGradientBoosting, held as tensors.

The search fits ``HistGradientBoostingClassifier`` / ``Regressor`` directly on the encoded training
matrix (``fit_direct``: no epochs, no optimizer), then converts the fitted ensemble into ``HGB``, an
``nn.Module`` whose whole state is buffers: per tree and node the split feature, the threshold, the
two children, where a missing value goes, and the leaf value. ``forward`` walks every tree at once,
one gather per level for a fixed number of levels (the deepest leaf's depth; a leaf points to itself,
so a row that reached one stays there), so the module exports to ONNX with a dynamic batch like every
other model and ``serve`` / ``predict`` need nothing new.

Why not skl2onnx or Hummingbird: ``best.pt`` must hold plain types and tensors that load with
``torch.load(weights_only=True)`` and rebuild from ``arch`` through the model registry; a pickled
estimator would break that rule, and a separate converter would give a second, unchecked model format.
Here the number the search judged (the module's validation metric) is the number of the exported file.

Exactness: a split sends ``x`` left when ``x <= threshold`` (NaN: ``missing_go_to_left``). Inputs are
float32, so each float64 threshold is stored as the largest float32 not above it, which makes the
float32 comparison decide exactly as scikit-learn's float64 one. Leaf values and their sums stay
float64. Outputs: classification logits (binary: ``[0, raw]``, so softmax equals ``predict_proba``;
multiclass: the raw score per class); regression: the prediction in the target's own units (the trees
are fitted on the target as it is, so no de-standardisation is needed).

The embedding-id columns of the encoded matrix are split on as ordinal numbers (no categorical
bitsets), so every split is a numeric threshold.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from automl.exceptions import DeadlineReached
from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models._trees import TreeTables, arch_int, pack_trees

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from automl.data.bundle import DataBundle

    Estimator = HistGradientBoostingClassifier | HistGradientBoostingRegressor

KINDS = ("binary", "multiclass", "regression")
#: bounds on what a model file may ask ``build`` to allocate: every node costs 37 bytes of buffers
MAX_ITER = 100_000
MAX_TREES = 200_000  # iterations x trees per iteration (one per class when multiclass)
MAX_NODES = 1 << 16  # per tree
MAX_TOTAL_NODES = 4_000_000  # trees x padded nodes: at most about 150 MB of buffers
MAX_DEPTH = 256  # levels walked by forward (each a few ONNX nodes)
MAX_FEATURES = 10_000_000
MAX_OUTPUTS = 100_000
#: boosting iterations fitted between two looks at the deadline (scikit-learn cannot stop mid-fit,
#: so the fit continues with ``warm_start`` in chunks)
CHUNK = 50
#: OpenMP threads of the scikit-learn fit (see ``fit_estimator``)
FIT_THREADS = 1

#: sampled parameter -> HistGradientBoosting argument
PARAMS = {
    "hgb_learning_rate": "learning_rate",
    "hgb_max_iter": "max_iter",
    "hgb_max_leaf_nodes": "max_leaf_nodes",
    "hgb_max_depth": "max_depth",
    "hgb_min_samples_leaf": "min_samples_leaf",
    "hgb_l2_regularization": "l2_regularization",
}


def _int(arch: Arch, key: str, lo: int, hi: int) -> int:
    return arch_int("hgb", arch, key, lo, hi)


def check_arch(arch: Arch) -> Arch:
    """The arch's sizes, checked against the bounds above before anything is allocated; ValueError
    (KeyError for a missing key) otherwise."""
    kind = arch["kind"]
    if kind not in KINDS:
        raise ValueError(f"hgb arch 'kind' must be one of {', '.join(KINDS)}, got {str(kind)[:40]}")
    sizes = {
        "num_features": _int(arch, "num_features", 1, MAX_FEATURES),
        "out_features": _int(arch, "out_features", 1, MAX_OUTPUTS),
        "n_iter": _int(arch, "n_iter", 1, MAX_ITER),
        "n_nodes": _int(arch, "n_nodes", 1, MAX_NODES),
        "depth": _int(arch, "depth", 0, MAX_DEPTH),
    }
    out = sizes["out_features"]
    if (kind, out) not in {("binary", 2), ("regression", 1)} and not (kind == "multiclass" and out >= 3):
        raise ValueError(f"hgb arch: a {kind} ensemble cannot have {out} outputs")
    per_iter = out if kind == "multiclass" else 1
    trees = sizes["n_iter"] * per_iter
    if trees > MAX_TREES or trees * sizes["n_nodes"] > MAX_TOTAL_NODES:
        raise ValueError(f"hgb arch: {trees} trees of {sizes['n_nodes']} nodes exceed the limit "
                         f"({MAX_TREES} trees, {MAX_TOTAL_NODES} nodes in all)")
    if sizes["depth"] >= sizes["n_nodes"]:
        raise ValueError(f"hgb arch: depth {sizes['depth']} needs more than {sizes['n_nodes']} nodes")
    return {**sizes, "kind": kind, "per_iter": per_iter, "trees": trees}


class HGB(TreeTables):
    """A boosted tree ensemble as padded tensors (``automl/models/_trees.py``: the layout, the walk and
    the checks of loaded buffers), plus the per-class baseline; only buffers, no parameters."""

    def __init__(self, arch: Arch) -> None:
        s = check_arch(arch)
        super().__init__("hgb", s["trees"], s["n_nodes"], s["depth"], s["num_features"])
        self.kind, self.n_iter, self.per_iter = s["kind"], s["n_iter"], s["per_iter"]
        self.register_buffer("baseline", torch.zeros(s["per_iter"], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        node = self.leaves(x)
        raw = self.value.index_select(0, node).reshape(-1, self.n_iter, self.per_iter).sum(1) + self.baseline
        if self.kind == "binary":
            raw = torch.cat([torch.zeros_like(raw), raw], dim=1)
        return raw.float()


def ensemble_from_sklearn(
    est: Estimator, num_features: int, out_features: int,
) -> tuple[Arch, dict[str, torch.Tensor]]:
    """A fitted HistGradientBoostingClassifier/Regressor -> (arch, state_dict) of ``HGB``; ValueError
    when the estimator is not one this converter reads (categorical splits, another loss)."""
    predictors = getattr(est, "_predictors", None)
    baseline = getattr(est, "_baseline_prediction", None)
    if not predictors or baseline is None:
        raise ValueError("not a fitted HistGradientBoosting estimator (no _predictors / _baseline_prediction)")
    if getattr(est, "_preprocessor", None) is not None:
        raise ValueError("categorical features are not supported by the tensor converter")
    if hasattr(est, "classes_"):
        kind = "binary" if len(est.classes_) == 2 else "multiclass"
    else:
        if getattr(est, "loss", "squared_error") != "squared_error":
            raise ValueError(f"regression loss {est.loss!r} is not supported (its link is not the identity)")
        kind = "regression"
    iters, per_iter = len(predictors), len(predictors[0])
    nodes = [p.nodes for it in predictors for p in it]
    if any(len(it) != per_iter for it in predictors) or any(bool(nd["is_categorical"].any()) for nd in nodes):
        raise ValueError("the ensemble has categorical splits or ragged iterations")
    n = max(len(nd) for nd in nodes)
    arch = {
        "family": "hgb", "kind": kind, "num_features": int(num_features), "out_features": int(out_features),
        "n_iter": iters, "n_nodes": n, "depth": max(int(nd["depth"].max()) for nd in nodes),
    }
    s = check_arch(arch)
    if s["per_iter"] != per_iter:
        raise ValueError(f"the estimator has {per_iter} trees per iteration, a {kind} model of "
                         f"{out_features} outputs needs {s['per_iter']}")
    # iteration-major, class-minor: forward sums over iterations per class
    state = pack_trees([{"is_leaf": nd["is_leaf"], "left": nd["left"], "right": nd["right"],
                         "feature": nd["feature_idx"], "threshold": nd["num_threshold"],
                         "missing_go_to_left": nd["missing_go_to_left"], "value": nd["value"]} for nd in nodes], n)
    if int(state["feature"].max()) >= num_features:
        raise ValueError(f"the estimator splits on column {int(state['feature'].max())} of {num_features}")
    state["baseline"] = torch.from_numpy(np.asarray(baseline, dtype=np.float64).reshape(-1).copy())
    return arch, state


def estimator_kwargs(params: Params, seed: int) -> dict[str, int | float | str | None]:
    """Sampled ``hgb_*`` parameters -> HistGradientBoosting keyword arguments (scikit-learn's
    defaults for the ones not sampled)."""
    kw: dict[str, int | float | str | None] = {"random_state": int(seed) % (2**32)}
    for name, arg in PARAMS.items():
        if params.get(name) is not None:
            kw[arg] = params[name]
    for arg in ("max_iter", "max_leaf_nodes", "max_depth", "min_samples_leaf"):
        if arg in kw:
            kw[arg] = int(kw[arg])
    for arg in ("learning_rate", "l2_regularization"):
        if arg in kw:
            kw[arg] = float(kw[arg])
    return kw


def fit_kwargs(fit: dict[str, str], kind: str) -> dict[str, str]:
    """The search's ``--metric`` and ``--class-weight`` (``bundle.meta["fit"]``, set by ``Task.bind``) as
    HistGradientBoosting keywords: its early stopping (on from 10,000 rows) scores the chosen metric
    (``scoring``: scikit-learn's scorer name) instead of the loss, and ``class_weight="balanced"``."""
    kw: dict[str, str] = {}
    if isinstance(fit.get("scoring"), str):
        kw["scoring"] = fit["scoring"]
    if fit.get("class_weight") == "balanced" and kind != "regression":
        kw["class_weight"] = "balanced"
    return kw


def fit_estimator(kind: str, x: np.ndarray, y: np.ndarray, kw: dict[str, int | float | str | None],
                  deadline: float | None = None) -> Estimator:
    """Fit HistGradientBoosting in chunks of ``CHUNK`` iterations (``warm_start``), looking at
    ``deadline`` (a ``time.monotonic()`` value) before each: DeadlineReached when it has passed."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    cls = HistGradientBoostingRegressor if kind == "regression" else HistGradientBoostingClassifier
    total = int(kw.pop("max_iter", 100))
    est = cls(warm_start=True, max_iter=min(CHUNK, total), **kw)
    # One OpenMP thread: PyTorch's OpenMP pool keeps spinning after each op, and scikit-learn's own
    # runtime then fights it for the cores (measured on 2 cores: 28 s with 2 threads, 0.3 s with 1).
    with threadpool_limits(limits=FIT_THREADS, user_api="openmp"):
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineReached(0)
            est.fit(x, y)
            if est.n_iter_ < est.max_iter or est.max_iter >= total:  # early stopping ended it, or done
                return est
            est.set_params(max_iter=min(est.max_iter + CHUNK, total))


@register_model("hgb")
class HGBFamily(ModelFamily):
    """scikit-learn's HistGradientBoosting, fitted directly (``fit_direct``) and held as tensors."""

    tasks = ("tabular",)
    params = frozenset(PARAMS)
    #: a tree of L leaves has 2L - 1 nodes (MAX_NODES per tree); 10^9 rows per leaf is no bound in practice
    limits = {"hgb_max_iter": (1, MAX_ITER), "hgb_max_leaf_nodes": (2, (MAX_NODES + 1) // 2),
              "hgb_max_depth": (1, MAX_DEPTH), "hgb_min_samples_leaf": (1, 10**9)}
    direct_fit = True
    prune_unsupported = "channel pruning does not apply to a tree ensemble (it has no channels)"
    quantize_unsupported = (
        "INT8/FP16 quantization does not apply to a tree ensemble (rounded thresholds would move its splits)")

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        """The arch of the *unfitted* ensemble (one iteration of single-leaf trees of value 0): the
        fitted one's sizes are known only after ``fit_direct``, which returns its own arch."""
        regression = meta.get("problem") == "regression"
        classes = int(meta["num_classes"])
        return {"family": "hgb", "kind": "regression" if regression else "binary" if classes == 2 else "multiclass",
                "num_features": int(meta["preprocess"]["num_features"]), "out_features": 1 if regression else classes,
                "n_iter": 1, "n_nodes": 1, "depth": 0}

    def build(self, arch: Arch) -> nn.Module:
        return HGB(arch)

    def fit_direct(self, params: Params, bundle: DataBundle, *, seed: int,
                   deadline: float | None = None) -> tuple[nn.Module, Arch]:
        meta = bundle.meta
        unfitted = self.arch_from_params(params, meta)
        x = bundle.x_train.detach().cpu().numpy().astype(np.float32, copy=False)
        y = bundle.y_train.detach().cpu().numpy()
        if unfitted["kind"] != "regression":
            missing = sorted(set(range(unfitted["out_features"])) - {int(v) for v in np.unique(y)})
            if missing:
                raise ValueError(f"class(es) {missing[:5]} have no training rows; trees cannot score them")
        kw = estimator_kwargs(params, seed)
        kw.update(fit_kwargs(bundle.meta.get("fit") or {}, unfitted["kind"]))
        est = fit_estimator(unfitted["kind"], x, y, kw, deadline)
        arch, state = ensemble_from_sklearn(est, unfitted["num_features"], unfitted["out_features"])
        model = HGB(arch)
        model.load_state_dict(state, strict=True)
        return model.eval(), arch
