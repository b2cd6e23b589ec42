"""CatBoost for the tabular task: gradient-boosted *oblivious* trees, held as tensors (family ``catboost``).

Built the way ``hgb`` is: the search fits ``CatBoostClassifier`` / ``Regressor`` directly on the
encoded training matrix (``fit_direct``: no epochs, no optimizer), with the validation split as its
early-stopping set (``use_best_model``: the model is cut to its best iteration, as AutoGluon does;
the validation score the search ranks trials by is therefore slightly optimistic for this family, as
it is for any early-stopped model). The fitted model is read from CatBoost's own JSON export and
turned into ``CatBoost``, an ``nn.Module`` whose whole state is buffers, so best.pt stays
``weights_only``, the module exports to ONNX with a dynamic batch, and ``serve`` / ``predict`` need
nothing new.

An oblivious tree asks the same question at every node of a level, so a tree of depth ``D`` is ``D``
(feature, border) pairs and ``2^D`` leaves: the leaf of a row is ``sum_d [x[f_d] > b_d] << d``.
``forward`` does that for every tree at once, one level at a time (a gather of the inputs and a
comparison per level, so memory is batch x trees), then one gather of leaf values and ``scale * sum +
bias`` as CatBoost does. Trees shallower than
the deepest are padded with levels whose border is +inf (the bit is always 0).

Exactness: CatBoost compares float32 inputs with float32 borders (``x > border``); the borders are
stored as float32, so the comparison decides as CatBoost's. Missing values follow each feature's
``nan_value_treatment`` (CatBoost's default ``nan_mode`` Min: NaN is below every border, bit 0; Max:
bit 1). Leaf values and their sums are float64. Outputs: classification logits (binary: ``[0, raw]``,
so softmax equals ``predict_proba``; multiclass: the raw score per class); regression: the prediction
in the target's own units (the trees are fitted on the target as it is).

Categorical columns reach CatBoost already encoded by the tabular preprocessing (one-hot blocks and
level ids, split on as ordinal numbers), so every split is a float-feature border.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from automl.exceptions import DeadlineReached
from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models._trees import arch_int

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from torch.nn.modules.module import _IncompatibleKeys

    from automl.data.bundle import DataBundle

KINDS = ("binary", "multiclass", "regression")
LOSSES = {"binary": "Logloss", "multiclass": "MultiClass", "regression": "RMSE"}
#: bounds on what a model file may ask ``build`` to allocate: a tree of depth D holds D splits (17
#: bytes each) and 2^D x outputs float64 leaf values (at most 32M x 8 bytes, about 256 MB)
MAX_TREES = 100_000
MAX_DEPTH = 16  # CatBoost's own limit for oblivious trees
MAX_VALUES = 32_000_000  # trees x 2^depth x outputs
MAX_FEATURES = 10_000_000
MAX_OUTPUTS = 100_000
#: threads of the CatBoost fit (as hgb: the search's trials and PyTorch share the cores)
FIT_THREADS = 1
#: iterations without a better validation loss before the fit stops, when the space does not say
EARLY_STOPPING_ROUNDS = 100

#: sampled parameter -> CatBoost argument (``catboost_auto_lr``: CatBoost picks the learning rate
#: from the data size and iterations, its default, instead of ``catboost_learning_rate``; it does so
#: only with its default L2 regularisation, so ``catboost_l2_leaf_reg`` is then left out: given an L2,
#: CatBoost 1.2 falls back to a learning rate of 0.03, which on diamonds took the validation RMSE of
#: its defaults from 529 to 558)
PARAMS = {
    "catboost_iterations": "iterations",
    "catboost_learning_rate": "learning_rate",
    "catboost_depth": "depth",
    "catboost_l2_leaf_reg": "l2_leaf_reg",
    "catboost_random_strength": "random_strength",
    "catboost_early_stopping_rounds": "early_stopping_rounds",
}


def _int(arch: Arch, key: str, lo: int, hi: int) -> int:
    return arch_int("catboost", arch, key, lo, hi)


def check_arch(arch: Arch) -> Arch:
    """The arch's sizes, checked against the bounds above before anything is allocated; ValueError
    (KeyError for a missing key) otherwise."""
    kind = arch["kind"]
    if kind not in KINDS:
        raise ValueError(f"catboost arch 'kind' must be one of {', '.join(KINDS)}, got {str(kind)[:40]}")
    s = {"num_features": _int(arch, "num_features", 1, MAX_FEATURES),
         "out_features": _int(arch, "out_features", 1, MAX_OUTPUTS),
         "n_trees": _int(arch, "n_trees", 1, MAX_TREES), "depth": _int(arch, "depth", 1, MAX_DEPTH)}
    out = s["out_features"]
    if (kind, out) not in {("binary", 2), ("regression", 1)} and not (kind == "multiclass" and out >= 3):
        raise ValueError(f"catboost arch: a {kind} model cannot have {out} outputs")
    width = out if kind == "multiclass" else 1  # leaf values a leaf holds
    if s["n_trees"] * (2 ** s["depth"]) * width > MAX_VALUES:
        raise ValueError(f"catboost arch: {s['n_trees']} trees of depth {s['depth']} ({width} value(s) a leaf) "
                         f"exceed the limit of {MAX_VALUES} leaf values")
    return {**s, "kind": kind, "width": width}


class CatBoost(nn.Module):
    """Oblivious trees as tensors (see the module docstring): per tree ``depth`` split features,
    borders and NaN bits, ``2^depth`` leaves of ``width`` values, and CatBoost's scale and bias."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        s = check_arch(arch)
        self.kind, self.trees, self.depth, self.width = s["kind"], s["n_trees"], s["depth"], s["width"]
        self.num_features = s["num_features"]
        splits, leaves = self.trees * self.depth, self.trees * 2 ** self.depth
        # an empty model: every level's border +inf (bit 0), every leaf 0
        self.register_buffer("feature", torch.zeros(splits, dtype=torch.int64))
        self.register_buffer("border", torch.full((splits,), float("inf"), dtype=torch.float32))
        self.register_buffer("nan_bit", torch.zeros(splits, dtype=torch.bool))  # a missing value gives bit 1
        self.register_buffer("leaf_value", torch.zeros(leaves, self.width, dtype=torch.float64))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(self.width, dtype=torch.float64))
        self.register_buffer("offsets", torch.arange(self.trees, dtype=torch.int64) * 2 ** self.depth,
                             persistent=False)

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Load, then check that every split reads a column of the input (a model file may come from
        anywhere): RuntimeError, which the loaders report as weights that do not match. Leaf ids are
        in range by construction (``depth`` bits plus the tree's offset)."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if int(self.feature.min()) < 0 or int(self.feature.max()) >= self.num_features:
            raise RuntimeError(f"catboost buffer 'feature' names a column outside the {self.num_features} inputs")
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        n = x.shape[0]
        feature = self.feature.reshape(self.trees, self.depth)
        border = self.border.reshape(self.trees, self.depth)
        nan_bit = self.nan_bit.reshape(self.trees, self.depth)
        leaf = self.offsets.unsqueeze(0).expand(n, -1)  # (n, trees)
        for d in range(self.depth):  # one level at a time: memory n x trees, not n x trees x depth
            values = x.index_select(1, feature[:, d])
            bit = (values > border[:, d]) | (torch.isnan(values) & nan_bit[:, d])
            leaf = leaf + bit.long() * (1 << d)
        raw = self.leaf_value.index_select(0, leaf.reshape(-1)).reshape(n, self.trees, self.width).sum(1)
        raw = raw * self.scale + self.bias
        if self.kind == "binary":
            raw = torch.cat([torch.zeros_like(raw), raw], dim=1)
        return raw.float()


def model_from_catboost(est: Any, num_features: int, out_features: int) -> tuple[Arch, dict[str, torch.Tensor]]:
    """A fitted CatBoostClassifier/Regressor -> (arch, state_dict) of ``CatBoost``, read from
    CatBoost's JSON export; ValueError when it is not one this converter reads (non-symmetric trees,
    categorical or text features, classes other than ``0 .. out_features - 1``, another loss)."""
    with tempfile.TemporaryDirectory(prefix="automl-catboost-") as tmp:
        path = Path(tmp) / "model.json"
        est.save_model(str(path), format="json")
        model = json.loads(path.read_text())
    trees = model.get("oblivious_trees")
    if not trees:
        raise ValueError("not a fitted CatBoost model with oblivious (symmetric) trees")
    loss = str(est.get_all_params().get("loss_function", ""))
    kind = {"Logloss": "binary", "MultiClass": "multiclass", "RMSE": "regression"}.get(loss)
    if kind is None:
        raise ValueError(f"CatBoost loss {loss!r} is not supported (Logloss, MultiClass and RMSE are)")
    if kind != "regression":
        names = model.get("model_info", {}).get("class_params", {}).get("class_names", [])
        if [int(c) for c in names] != list(range(out_features)):
            raise ValueError(f"the model's classes {names[:5]} are not the {out_features} class ids 0 .. "
                             f"{out_features - 1}")
    floats = {int(f["feature_index"]): f for f in model.get("features_info", {}).get("float_features", [])}
    depth = max(1, max(len(t.get("splits", [])) for t in trees))
    arch = {"family": "catboost", "kind": kind, "num_features": int(num_features), "out_features": int(out_features),
            "n_trees": len(trees), "depth": depth}
    s = check_arch(arch)
    width, leaves = s["width"], 2 ** depth
    feature = np.zeros((len(trees), depth), np.int64)
    border = np.full((len(trees), depth), np.inf, np.float32)
    nan_bit = np.zeros((len(trees), depth), bool)
    value = np.zeros((len(trees), leaves, width), np.float64)
    for i, tree in enumerate(trees):
        splits = tree.get("splits", [])
        for d, sp in enumerate(splits):
            if sp.get("split_type") != "FloatFeature":
                raise ValueError(f"split type {sp.get('split_type')!r} is not supported (only float features)")
            info = floats[int(sp["float_feature_index"])]
            feature[i, d] = int(info["flat_feature_index"])
            border[i, d] = np.float32(sp["border"])
            nan_bit[i, d] = info.get("nan_value_treatment") == "AsTrue"
        vals = np.asarray(tree["leaf_values"], np.float64)
        if vals.size != (2 ** len(splits)) * width:
            raise ValueError(f"tree {i} has {vals.size} leaf values, expected {(2 ** len(splits)) * width}")
        value[i, : 2 ** len(splits)] = vals.reshape(-1, width)  # leaf-major, one value per dimension
    if int(feature.max()) >= num_features:
        raise ValueError(f"the model splits on column {int(feature.max())} of {num_features}")
    scale, bias = model.get("scale_and_bias", [1.0, [0.0] * width])
    bias = np.asarray(bias, np.float64).reshape(-1)
    if bias.size == 1 and width > 1:
        bias = np.full(width, float(bias[0]))
    state = {"feature": torch.from_numpy(feature.reshape(-1)), "border": torch.from_numpy(border.reshape(-1)),
             "nan_bit": torch.from_numpy(nan_bit.reshape(-1)),
             "leaf_value": torch.from_numpy(value.reshape(-1, width)),
             "scale": torch.tensor(float(scale), dtype=torch.float64), "bias": torch.from_numpy(bias.copy())}
    return arch, state


def estimator_kwargs(params: Params, seed: int) -> dict[str, int | float | str | None]:
    """Sampled ``catboost_*`` parameters -> CatBoost keyword arguments (CatBoost's defaults for the
    ones not sampled: 1000 iterations, depth 6, L2 3, an automatic learning rate), the early stopping
    (``EARLY_STOPPING_ROUNDS``) and the bounds: ValueError for a value outside what ``CatBoost`` holds."""
    kw: dict[str, int | float | str | None] = {"random_seed": int(seed) % (2**31),
                                               "early_stopping_rounds": EARLY_STOPPING_ROUNDS}
    for name, arg in PARAMS.items():
        if params.get(name) is not None:
            kw[arg] = params[name]
    if params.get("catboost_auto_lr"):
        kw.pop("learning_rate", None)
        kw.pop("l2_leaf_reg", None)
    for arg, lo, hi in (("iterations", 1, MAX_TREES), ("depth", 1, MAX_DEPTH), ("early_stopping_rounds", 1, 10**6)):
        if arg in kw:
            v = kw[arg]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or not lo <= v <= hi:
                raise ValueError(f"catboost {arg} must be an integer in [{lo}, {hi}], got {str(v)[:40]}")
            kw[arg] = int(v)
    for arg in ("learning_rate", "l2_leaf_reg", "random_strength"):
        if arg in kw:
            kw[arg] = float(kw[arg])  # type: ignore[arg-type]
    return kw


class _Deadline:
    """A CatBoost callback: stop boosting once ``clock()`` reaches ``deadline`` (looked at after every
    iteration; ``reached`` says whether it did)."""

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self.deadline, self.clock, self.reached = deadline, clock, False

    def after_iteration(self, info: Any) -> bool:
        self.reached = self.clock() >= self.deadline
        return not self.reached


def fit_catboost(kind: str, x: np.ndarray, y: np.ndarray, kw: dict[str, int | float | str | None],
                 val: tuple[np.ndarray, np.ndarray] | None = None, deadline: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> Any:
    """Fit CatBoost (``val``: the early-stopping set), looking at ``deadline`` (a ``clock()`` value)
    before the fit and after every iteration: DeadlineReached when it has passed. ValueError for
    what CatBoost refuses."""
    from catboost import CatBoostClassifier, CatBoostError, CatBoostRegressor

    if deadline is not None and clock() >= deadline:
        raise DeadlineReached(0)
    cls = CatBoostRegressor if kind == "regression" else CatBoostClassifier
    kw = dict(kw)
    if val is None:
        kw.pop("early_stopping_rounds", None)
    # no files (catboost_info/) in the working directory; no console output
    est = cls(loss_function=LOSSES[kind], thread_count=FIT_THREADS, verbose=False, allow_writing_files=False, **kw)
    stop = _Deadline(deadline, clock) if deadline is not None else None
    try:
        est.fit(x, y, eval_set=val, use_best_model=val is not None, callbacks=[stop] if stop else None)
    except CatBoostError as exc:
        raise ValueError(f"CatBoost: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else exc}") from None
    if stop is not None and stop.reached:
        raise DeadlineReached(0)
    return est


@register_model("catboost")
class CatBoostFamily(ModelFamily):
    """CatBoost (Prokhorenkova et al. 2018: ordered boosting of oblivious trees), fitted directly
    (``fit_direct``) and held as tensors."""

    tasks = ("tabular",)
    params = frozenset({*PARAMS, "catboost_auto_lr"})
    limits = {"catboost_iterations": (1, MAX_TREES), "catboost_depth": (1, MAX_DEPTH),
              "catboost_early_stopping_rounds": (1, 10**6)}
    direct_fit = True
    prune_unsupported = "channel pruning does not apply to a tree ensemble (it has no channels)"
    quantize_unsupported = (
        "INT8/FP16 quantization does not apply to a tree ensemble (rounded borders would move its splits)")

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        """The arch of the *unfitted* model (one tree of depth 1, border +inf, leaves 0): the fitted
        one's sizes are known only after ``fit_direct``, which returns its own arch."""
        regression = meta.get("problem") == "regression"
        classes = int(meta["num_classes"])
        return {"family": "catboost",
                "kind": "regression" if regression else "binary" if classes == 2 else "multiclass",
                "num_features": int(meta["preprocess"]["num_features"]), "out_features": 1 if regression else classes,
                "n_trees": 1, "depth": 1}

    def build(self, arch: Arch) -> nn.Module:
        return CatBoost(arch)

    def fit_direct(self, params: Params, bundle: DataBundle, *, seed: int,
                   deadline: float | None = None) -> tuple[nn.Module, Arch]:
        unfitted = self.arch_from_params(params, bundle.meta)
        kw = estimator_kwargs(params, seed)
        # bounded before any work: iterations x 2^depth leaves x values a leaf
        check_arch({**unfitted, "n_trees": int(kw.get("iterations", 1000)), "depth": int(kw.get("depth", 6))})

        def arrays(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            return x.detach().cpu().numpy().astype(np.float32, copy=False), y.detach().cpu().numpy()

        x, y = arrays(bundle.x_train, bundle.y_train)
        val = arrays(bundle.x_val, bundle.y_val) if len(bundle.y_val) else None
        if unfitted["kind"] != "regression":
            missing = sorted(set(range(unfitted["out_features"])) - {int(v) for v in np.unique(y)})
            if missing:
                raise ValueError(f"class(es) {missing[:5]} have no training rows; trees cannot score them")
        est = fit_catboost(unfitted["kind"], x, y, kw, val, deadline)
        arch, state = model_from_catboost(est, unfitted["num_features"], unfitted["out_features"])
        model = CatBoost(arch)
        model.load_state_dict(state, strict=True)
        return model.eval(), arch
