"""What every task provides: data loading, model building, the loss/metric of training, and
everything the rest of the project must know about the task (its default data, source checks,
whether cross-validation and ``--test-data`` apply, its classic reference, output formatting, test
predictions). Nothing outside ``automl/tasks/`` branches on a task's name: it asks the task."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from automl.exceptions import ConfigError, DataError, InputError
from automl.tasks._metrics import (
    Metric,
    best_threshold,
    check_metric_fits,
    constant_score,
    get_metric,
    outputs_metric,
    problem_of,
)
from automl.tasks._outputs import Decision, format_outputs

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl.data.bundle import DataBundle, DataConfig, InputLimits
    from automl.models import ModelFamily

#: the rarest class's share of the training rows under which a search suggests --class-weight balanced
MINORITY_SHARE = 0.10

#: a fitted classic reference: (its name, inputs of the bundle -> NumPy predictions: class probabilities
#: (N, C) for a classification, values for a regression; ``Metric.score`` takes either)
Reference = tuple[str, Callable[["torch.Tensor"], np.ndarray]]


class Task:
    """Base class of a task; subclasses register themselves with ``@register_task``.

    ``metric`` names what ``evaluate_metric`` returns and ``direction`` says whether higher is better.
    """

    name: ClassVar[str] = ""
    metric: ClassVar[str] = "accuracy"
    direction: ClassVar[str] = "maximize"
    description: ClassVar[str] = ""
    #: the model family (``automl.models``) a search uses when its space names no ``model``
    default_model: ClassVar[str] = ""
    #: ``--epochs`` when not given: the most epochs a trial trains
    default_epochs: ClassVar[int] = 10
    #: ``--data`` when not given ("": the task needs one; its loader says what)
    default_data: ClassVar[str] = ""
    #: the search space when ``--space`` is not given: a YAML file's path; None: the shipped
    #: ``search_spaces/<name>.yaml`` (a task defined outside the package brings its own)
    default_space: ClassVar[str | None] = None
    #: ``--cv`` applies: K-fold cross-validation per trial, by default on small data (``automl.search.cv``)
    cross_validation: ClassVar[bool] = False
    #: why ``--test-data`` (a separate test file) does not apply to this task; None: it does
    test_data_unsupported: ClassVar[str | None] = "its data keeps its own test split"
    #: the leaderboard fits a classic reference model (``reference_model``) at the start of a search
    has_reference: ClassVar[bool] = False
    #: why the search does not average its trials into an ensemble (``automl.study._ensemble``) for this
    #: task; None: it does (models output logits or values that a weighted mean combines)
    ensemble_unsupported: ClassVar[str | None] = None
    #: the problems this task's data can be (``binary``, ``multiclass``, ``regression``): a ``--metric``
    #: must fit one of them before any data is read, and the data's own kind once it is
    problem_types: ClassVar[tuple[str, ...]] = ("binary", "multiclass")
    #: ``--metric``: the metric the user chose (None: ``metric``, the task's default for its data)
    chosen_metric: str | None = None

    def choose_metric(self, name: str | None, problem: str | None = None) -> None:
        """Use the metric ``name`` (None: the task's default) for this task's searches. A ConfigError
        (one line listing the valid names) when it is unknown or fits none of ``problem_types`` (only
        ``regression`` or classification when ``problem`` says which); the data's own kind is checked
        by ``fit_metric`` once it is known."""
        if name is None:
            return
        kinds = set(self.problem_types)
        if problem == "regression":
            kinds &= {"regression"}
        elif problem == "classification":
            kinds -= {"regression"}
        what = (f"a {problem} target" if problem else f"the {self.name} task")
        check_metric_fits(name, kinds, what)
        self.chosen_metric = name
        spec = get_metric(name)
        self.metric, self.direction = name, spec.direction

    def use_stored_metric(self, name: str | None) -> None:
        """The metric a study or a model file recorded: ``choose_metric``, except that the task's own
        default is left to the data's kind (a task of its own may fit its default to no declared kind)."""
        if name is not None and name != type(self).metric:
            self.choose_metric(name)

    def fit_metric(self, problem: str, detail: str = "") -> None:
        """The data is a ``problem`` (``binary``, ``multiclass``, ``regression``): the chosen metric
        must fit it (a ConfigError listing the names that do, ``detail`` saying why it is that kind);
        without a chosen one, the default metric of that kind (regression: rmse, else the task's own)."""
        if self.chosen_metric is None:
            own = type(self).metric  # a classification default (tabular's accuracy) becomes rmse on a regression
            default = "rmse" if problem == "regression" and get_metric(own).labels else own
            self.metric, self.direction = default, get_metric(default).direction
            return
        what = {"binary": "a binary classification", "multiclass": "a multiclass classification",
                "regression": "a regression target"}.get(problem, problem)
        check_metric_fits(self.chosen_metric, {problem}, what + (f" ({detail})" if detail else ""))

    #: the binary decision threshold on the positive class's probability (``decision_threshold``)
    threshold: float = 0.5
    #: the class index a binary metric calls positive (f1, average_precision, the threshold): the rarer
    #: class of the training split (ties: class 1), set by ``bind``
    positive: int = 1
    #: ``--class-weight``: ``balanced`` weighs each class in the loss by n / (C x its training rows)
    #: (networks) and sets scikit-learn's ``class_weight="balanced"`` (tree families); ``none``
    class_weight: str = "none"
    #: the loss weight of each class once ``bind`` saw the data (None: unweighted)
    loss_weights: list[float] | None = None

    def imbalance_note(self, bundle: DataBundle) -> str | None:
        """A note suggesting ``--class-weight balanced`` when the rarest class holds under
        ``MINORITY_SHARE`` of the training rows and under half its balanced share (1 / 2C: ten even
        classes of about 10% each are not imbalanced), and the classes are not weighted yet; else None."""
        if self.class_weight != "none" or problem_of(bundle.meta) == "regression" or not len(bundle.y_train):
            return None
        n_classes = int(bundle.meta["num_classes"])
        counts = np.bincount(bundle.y_train.detach().cpu().numpy().astype(np.int64), minlength=n_classes)
        share = float(counts.min()) / float(counts.sum())
        if share >= min(MINORITY_SHARE, 0.5 / max(n_classes, 1)):
            return None
        rare = (bundle.meta.get("classes") or list(range(n_classes)))[int(counts.argmin())]
        return (f"class {str(rare)[:40]!r} is {share:.1%} of the training rows: consider --class-weight balanced "
                f"and a --metric such as average_precision, roc_auc, f1 or balanced_accuracy")

    def bind(self, bundle: DataBundle) -> None:
        """The data is loaded: fit the metric to its kind (``fit_metric``), compute the class weights,
        and record both in ``bundle.meta["fit"]`` for the families that fit themselves (trees)."""
        problem = problem_of(bundle.meta)
        n_classes = int(bundle.meta.get("num_classes") or 0)
        self.fit_metric(problem, f"{n_classes} classes" if problem != "regression" else "")
        if problem == "binary" and len(bundle.y_train):
            counts = np.bincount(bundle.y_train.detach().cpu().numpy().astype(np.int64), minlength=2)
            self.positive = 0 if counts[0] < counts[1] else 1
        fit: dict[str, Any] = {"metric": self.metric}
        scorer = self.metric_spec.sklearn_scorer
        if scorer and self.metric not in ("accuracy", "rmse"):  # the defaults keep HGB's early stopping on its loss
            multiclass = problem == "multiclass"
            fit["scoring"] = "roc_auc_ovr" if scorer == "roc_auc" and multiclass else scorer
        if self.class_weight == "balanced" and problem != "regression":
            counts = np.bincount(bundle.y_train.detach().cpu().numpy().astype(np.int64), minlength=n_classes)
            self.loss_weights = [float(len(bundle.y_train) / (n_classes * max(int(c), 1))) for c in counts]
            fit["class_weight"] = "balanced"
        bundle.meta["fit"] = fit

    @property
    def metric_spec(self) -> Metric:
        """The ``Metric`` that ``metric`` names: direction, whether predictions are class labels."""
        return get_metric(self.metric)

    @property
    def stratified(self) -> bool:
        """Splits and cross-validation folds keep the class proportions (the metric scores labels)."""
        return self.metric_spec.labels

    def check_source(self, source: str, target: str | None) -> None:
        """Cheap checks of ``--data`` (and ``--target``) before torch is imported: a mistyped path
        fails in well under two seconds. Raise the error the loader would raise later; anything
        that cannot be checked cheaply is left to ``load_data``. The default checks nothing."""

    def prepare(self, cfg: DataConfig) -> None:
        """Called once before the study is created. A task whose ``metric`` and ``direction`` depend
        on the data (tabular regression: rmse, minimize) sets them on the instance here; the
        default does nothing."""

    def load_data(self, cfg: DataConfig) -> DataBundle:
        raise NotImplementedError

    @property
    def model_params(self) -> frozenset[str]:
        """Parameter names the model families of this task consume (the rest must be training
        parameters): ``model``, which picks the family, and every such family's own parameters."""
        from automl.models import get_model, list_models

        return frozenset({"model"}).union(*(get_model(n).params for n in list_models(self.name)))

    def model_family(self, params: dict[str, Any]) -> ModelFamily:
        """The registered family that ``params["model"]`` (default ``default_model``) names; ValueError
        when it is unknown or does not fit this task."""
        from automl.models import get_model, list_models

        name = params.get("model", self.default_model)
        names = list_models(self.name)
        if name not in names:
            raise ValueError(f"unknown {self.name} model {name!r} (choose from: {', '.join(names)})")
        return get_model(name)

    def arch_from_params(self, params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        """Plain-typed architecture description (what best.pt stores under ``arch``)."""
        return self.model_family(params).arch_from_params(params, meta)

    def build_model(self, params: dict[str, Any], meta: dict[str, Any]) -> nn.Module:
        from automl.models import build_from_arch

        return build_from_arch(self.arch_from_params(params, meta))

    def example_input(self, meta: dict[str, Any], batch: int = 1) -> torch.Tensor:
        import torch

        return torch.zeros((batch, *meta["input_shape"]), dtype=torch.float32)

    def loss_fn(self, label_smoothing: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """(logits, targets) -> the training loss: cross-entropy. Logits (N, k, C) are the outputs of
        k ensemble members (an ensemble model in train mode, e.g. ``tabm``): the loss is then the mean
        of the members' losses, so each member learns as a model of its own."""
        import torch
        import torch.nn.functional as F

        weights = self.loss_weights  # --class-weight balanced: per-class weights, moved to the logits' device

        def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            w = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=logits.device)
            if logits.dim() == 3:
                k = logits.shape[1]
                return F.cross_entropy(logits.float().reshape(-1, logits.shape[2]), y.repeat_interleave(k),
                                       weight=w, label_smoothing=label_smoothing)
            return F.cross_entropy(logits.float(), y, weight=w, label_smoothing=label_smoothing)

        return loss

    def metric_fn(self, threshold: float | None = None) -> Callable[[torch.Tensor, torch.Tensor], float]:
        """(outputs, targets) -> float: the task's metric (``metric``) of a model's outputs, a binary
        label metric at the decision ``threshold`` (None: ``self.threshold``). Accuracy at 0.5 stays on
        the tensors; other metrics take the softmax probabilities (classification) or the values as
        NumPy arrays into ``Metric.score`` (``sklearn.metrics``)."""
        spec = self.metric_spec
        threshold = self.threshold if threshold is None else threshold
        if spec.name == "accuracy" and threshold == 0.5:
            def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
                return float((logits.argmax(dim=1) == y).float().mean().item()) if len(y) else 0.0

            return accuracy
        return outputs_metric(spec, threshold, self.positive)

    def score(self, pred: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> float:
        """The task's metric of NumPy predictions (labels, probabilities or values; ``Metric.score``),
        with this data's positive class (``positive``)."""
        return self.metric_spec.score(pred, y, threshold, self.positive)

    #: choose a decision threshold for the best model (``--metric`` given: the default accuracy search
    #: keeps the argmax it always had)
    tune_threshold: bool = False

    def uses_threshold(self, meta: dict[str, Any]) -> bool:
        """Whether the best model gets a decision threshold: a ``--metric`` that one changes (f1,
        balanced_accuracy, accuracy) on binary data."""
        return self.tune_threshold and self.metric_spec.thresholded and problem_of(meta) == "binary"

    def decision_threshold(self, val_outputs: torch.Tensor, y_val: torch.Tensor, meta: dict[str, Any]) -> float | None:
        """The binary decision threshold that is best for the metric on the validation outputs
        (``best_threshold``); None when the metric does not depend on one or the data is not binary."""
        spec = self.metric_spec
        if not self.uses_threshold(meta) or not len(y_val):
            return None
        p = val_outputs.detach().float().softmax(dim=-1)[:, self.positive].cpu().numpy()
        y = y_val.detach().cpu().numpy()
        return round(best_threshold(spec, p, y if self.positive == 1 else 1 - y), 6)

    def augment_fn(self, meta: dict[str, Any]) -> Callable[..., torch.Tensor] | None:
        """A batched augmentation ``(x, strength, generator) -> x`` or None."""
        return None

    # --- what a search, compress and the report ask of the task ---------------------------------------

    def reference_model(self, bundle: DataBundle) -> Reference | None:
        """A fast classic model fitted on ``bundle``'s training split, for the leaderboard (only
        called when ``has_reference``); None when there is none for this data."""
        return None

    def test_predictions(self, test_logits: torch.Tensor, bundle: DataBundle,
                         threshold: float | None = None) -> dict[str, Any]:
        """The best model's test-split predictions, for best.json and the report: ``y_true``,
        ``y_pred`` (class indices when the task has classes, at the binary decision ``threshold`` when
        given, else the output values) and ``classes`` (empty without classes)."""
        logits = test_logits.cpu()
        classes = list(bundle.meta.get("classes") or [])
        if classes and threshold is not None and logits.shape[1] == 2:  # the decision threshold, binary
            pos = (logits.float().softmax(dim=1)[:, self.positive] >= threshold).long()
            y_pred = (pos if self.positive == 1 else 1 - pos).tolist()
        elif classes:
            y_pred = logits.argmax(dim=1).tolist()
        else:
            y_pred = [round(float(v), 6) for v in logits.reshape(-1).tolist()]
        y_true = bundle.y_test.cpu().reshape(-1).tolist()
        return {"y_true": y_true, "y_pred": y_pred, "classes": classes}

    def chance_score(self, bundle: DataBundle) -> float | None:
        """The metric of a constant prediction on the validation split: the training split's class
        priors for every row (the majority-class accuracy, an AUC of 0.5), or its mean (regression).
        The search's family race (``automl.study._family_race``) measures how far behind a family is
        against it. None when the data has no validation targets or the metric cannot score it."""
        return constant_score(self.metric_spec, bundle.y_train.detach().cpu().numpy(),
                              bundle.y_val.detach().cpu().numpy(), int(bundle.meta.get("num_classes") or 0),
                              self.positive)

    def distill_unsupported(self, bundle: DataBundle) -> str | None:
        """Why ``compress --distill`` does not apply (it softens a class distribution), or None."""
        if not self.metric_spec.labels or bundle.y_train.is_floating_point():
            return "distillation needs class logits (this is a regression)"
        return None

    # --- in-memory data of ``automl.search`` and the model card --------------------------------------

    #: the file an in-memory table is stored as in the run folder (``"parquet"`` keeps dtypes, ``"csv"``);
    #: None: the task reads no in-memory data (``in_memory_table`` refuses)
    memory_table_format: ClassVar[str | None] = None

    def in_memory_table(self, data: Any, target: str | None) -> tuple[Any, str | None]:
        """A pandas DataFrame or an ``(X, y)`` pair given to ``automl.search`` -> (the DataFrame its
        loader reads once it is stored as ``memory_table_format``, the target column). The default
        refuses: the task reads a folder."""
        raise ConfigError(f"in-memory data (a DataFrame or (X, y)) is for tasks that read tables; the {self.name} "
                          f"task reads a folder: pass its path as data=")

    def card_pipeline_tag(self, data: dict[str, Any]) -> str:
        """The Hugging Face ``pipeline_tag`` of a model card, from the lineage's data record (``classes``,
        ``source``, ``target``); the default is the task's name."""
        return self.name

    #: tags a model card adds for this task (besides its name)
    card_tags: ClassVar[tuple[str, ...]] = ()

    # --- raw inputs: what ``predict`` reads and ``serve`` accepts (the task owns its kind) ----------

    #: what one raw sample of a JSON request is (tabular: dict records, text: strings); None when JSON
    #: carries numeric arrays only
    raw_json_type: ClassVar[type | None] = None
    #: how JSON samples may look, for error messages
    json_hint: ClassVar[str] = "nested arrays of numbers"
    #: whether the model's sample shape is the training shape stored in the spec (images)
    fixed_shape: ClassVar[bool] = False

    def feature_names(self, spec: dict[str, Any]) -> list[str]:
        """The named input features, in the order of a 2-D array's columns (``automl.Predictor.features``);
        empty when samples are no rows of named features."""
        return []

    def python_inputs(self, data: Any, spec: dict[str, Any]) -> list[Any]:
        """A Python object given to ``automl.Predictor`` -> the raw samples ``encode_inputs`` takes: a path
        is read as ``automl predict`` reads it, a DataFrame's rows become dict records (its ``target``
        column dropped), a Series its values, a dict one sample, anything else is iterated."""
        import pandas as pd

        from automl.tasks._frames import records

        if isinstance(data, (str, os.PathLike)):
            return self.read_inputs([os.fspath(data)], spec)[1]  # a file or folder, as automl predict reads it
        if isinstance(data, pd.DataFrame):
            return records(data.drop(columns=[c for c in [spec.get("target")] if c in data.columns]))
        if isinstance(data, pd.Series):
            return data.tolist()
        if isinstance(data, dict):
            return [data]
        return list(data)

    def read_inputs(self, items: list[str], spec: dict[str, Any]) -> tuple[list[str], list[Any]]:
        """Command-line INPUTS of ``automl predict`` -> (a name per sample, the raw samples)."""
        raise DataError(f"the {self.name} task cannot read raw inputs")

    def encode_inputs(self, raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
        """Raw samples -> the NumPy batch the model takes, preprocessed exactly as in training."""
        raise DataError(f"the {self.name} task cannot encode raw inputs")

    def input_notes(self, raw: list[Any], spec: dict[str, Any]) -> tuple[list[str], list[dict[str, Any] | None]]:
        """(notes ``predict`` says once per run about these raw samples, per sample the keys to add
        to its prediction or None); the default says nothing."""
        return [], [None] * len(raw)

    def format_outputs(self, outputs: np.ndarray, classes: list[str], top_k: int | None = None,
                       decision: Decision | None = None) -> list[dict[str, Any]]:
        """Model outputs -> one plain dict per sample (predict and serve): class probabilities when
        the model has ``classes`` (a binary label by the ``decision`` (threshold, positive class) when
        given), else its values (``automl.tasks.format_outputs``)."""
        return format_outputs(outputs, classes, top_k, decision)

    def encode_json(self, inputs: list[Any], spec: dict[str, Any], options: dict[str, Any],
                    limits: InputLimits) -> np.ndarray | None:
        """The ``inputs`` of a JSON request -> the batch, when they are raw samples of this task;
        None when they are numeric arrays for the generic checks. ``options`` are the other keys
        of the request object."""
        if self.raw_json_type is not None and inputs and all(isinstance(r, self.raw_json_type) for r in inputs):
            return self.encode_inputs(inputs, spec)
        return None

    def validate_spec(self, spec: dict[str, Any]) -> None:
        """Check a preprocessing spec read from a model file (which may come from anywhere) before
        anything uses it: types, ranges and sizes. A DataError names the first bad key."""

    def describe_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The public part of the spec that ``/metadata`` shows: what a client needs to prepare inputs."""
        return {"kind": spec.get("kind")}

    def encode_files(self, files: list[tuple[str, bytes]], spec: dict[str, Any], limits: InputLimits) -> np.ndarray:
        """Uploaded files (name, bytes) -> the batch; only tasks whose inputs are files accept them."""
        raise InputError(f"this is a {self.name} model: send JSON {{\"inputs\": [...]}}, not files",
                         "unsupported_media_type")


# --- checking a preprocessing spec read from a model file -------------------------------------------


def _bad(key: str, what: str, value: Any) -> DataError:
    shown = repr(value)
    return DataError(f"preprocess.{key} must be {what}, got {shown[:60]}{'…' if len(shown) > 60 else ''}")


def spec_int(spec: dict[str, Any], key: str, lo: int, hi: int) -> int:
    """``spec[key]``, an int in [lo, hi]."""
    v = spec.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(key, f"an integer in [{lo}, {hi}]", v)
    return v


def spec_list(spec: dict[str, Any], key: str, item: type | tuple[type, ...], lo: int, hi: int) -> list[Any]:
    """``spec[key]``, a list of ``lo`` to ``hi`` items of type ``item`` (bools are not numbers)."""
    v = spec.get(key)
    if (not isinstance(v, list) or not lo <= len(v) <= hi
            or any(isinstance(x, bool) or not isinstance(x, item) for x in v)):
        names = item.__name__ if isinstance(item, type) else " or ".join(t.__name__ for t in item)
        raise _bad(key, f"a list of {lo} to {hi} values of type {names}", v)
    return v


def spec_numbers(spec: dict[str, Any], key: str, n: int, positive: bool = False) -> list[float]:
    """``spec[key]``, a list of ``n`` finite numbers (> 0 with ``positive``)."""
    import math

    v = spec_list(spec, key, (int, float), n, n)
    if not all(math.isfinite(x) and (not positive or x > 0) for x in v):
        raise _bad(key, f"{n} finite{' positive' if positive else ''} numbers", v)
    return [float(x) for x in v]
