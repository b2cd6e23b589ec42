"""The anomaly task: autoencoders (and an IsolationForest) that score how unusual a table row or an
image is, trained on normal samples only.

With labels (``--target`` for tables, class folders for images; ``--normal`` says which values are
normal) training uses the normal rows of the training split, validation and test keep anomalies and
a model is chosen by validation AUROC, or the ``--metric`` chosen (``METRICS``: average_precision, or
f1 at the threshold chosen on validation); the registry's metrics score the 1-D score with the anomaly
(label 1) as the positive class. Without labels every row trains and a model is chosen by its
held-out reconstruction error (no labelled metric exists then). Every model outputs the anomaly
score (N,), higher = more anomalous. The best model's threshold is chosen on validation (maximum F1,
or the ``--contamination`` quantile without labels) and stored in the preprocessing spec, so best.pt
and the ONNX metadata carry it; ``predict`` and ``/predict`` answer ``score`` and ``is_anomaly``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.data.bundle import DataBundle, DataConfig, InputLimits
from automl.exceptions import ConfigError, DataError
from automl.tasks._anomaly_data import SplitCuts, choose_threshold, normal_values, one_class_split, random_split
from automl.tasks._base import Reference, Task
from automl.tasks._metrics import list_metrics
from automl.tasks._outputs import Decision, _num
from automl.tasks._registry import register_task

if TYPE_CHECKING:
    import torch


#: the metrics ``--metric`` may choose for this task (labelled data: the anomaly is the positive class);
#: without labels models are chosen by ``recon_error``, the mean held-out score
METRICS = ("roc_auc", "average_precision", "f1")


#: column names that suggest labels (a note says so when they are read as features)
LABEL_NAMES = ("label", "labels", "target", "class", "anomaly", "is_anomaly", "outlier", "y")
#: what one --data names: an image source (a folder of class folders, or the built-in digits) or a table
IMAGE_SETS = ("digits",)


def is_image_source(source: str) -> bool:
    return source.lower() in IMAGE_SETS or Path(source).expanduser().is_dir()


@register_task("anomaly")
class AnomalyTask(Task):
    metric = "roc_auc"
    direction = "maximize"
    description = "anomaly detection with autoencoders and IsolationForest (tables, image folders)"
    default_model = "ae"
    default_epochs = 30
    has_reference = True
    # an autoencoder's reconstruction error and an isolation forest's path-length score live on
    # different scales: their weighted mean ranks rows by neither
    ensemble_unsupported = "anomaly scores of different families are on different scales"
    #: labelled data: normal (0) or anomaly (1), scored on a 1-D anomaly score (``METRICS``)
    problem_types = ("binary",)

    def __init__(self) -> None:
        self._spec: dict[str, Any] = {}  # the model file's spec, seen by the input hooks: format_outputs reads it
        self._contamination: float | None = None
        self._recent: list[tuple[torch.Tensor, torch.Tensor]] = []  # the last metric_fn calls: (scores, y)
        self._y_val: np.ndarray | None = None  # the bound data's validation targets (``bind``)
        self._cuts: SplitCuts | None = None  # ``score``'s f1 thresholds per split (``metric_fn`` has its own)

    # --- data -------------------------------------------------------------------------------------

    def _labelled(self, cfg: DataConfig) -> bool:
        if is_image_source(cfg.source):
            return cfg.contamination is None or bool(cfg.normal)
        return cfg.target is not None

    def prepare(self, cfg: DataConfig) -> None:
        """With labels: the chosen ``--metric`` (default roc_auc); without: ``recon_error`` (a ConfigError
        when a labelled ``--metric`` was chosen, one line)."""
        labelled = self._labelled(cfg)
        if labelled and self.chosen_metric is not None:
            return
        if not labelled and self.chosen_metric is not None:
            raise ConfigError(f"--metric {self.chosen_metric} needs labels (--target COLUMN for a table, --normal "
                              "CLASS for images); without them models are chosen by held-out reconstruction error")
        self.metric, self.direction = ("roc_auc", "maximize") if labelled else ("recon_error", "minimize")

    def check_source(self, source: str, target: str | None) -> None:
        from automl.tasks.tabular import TabularTask

        if not source:
            raise DataError("the anomaly task needs --data: a .csv/.tsv/.parquet table, a folder of class folders "
                            "or digits")
        if not is_image_source(source):
            TabularTask().check_source(source, target)

    def load_data(self, cfg: DataConfig) -> DataBundle:
        if cfg.contamination is not None and not 0 < cfg.contamination < 0.5:
            raise DataError(f"--contamination must be in (0, 0.5), got {cfg.contamination}")
        self.prepare(cfg)
        self._contamination = cfg.contamination
        return self._load_images(cfg) if is_image_source(cfg.source) else self._load_table(cfg)

    def _load_table(self, cfg: DataConfig) -> DataBundle:
        import torch

        from automl.data.tabular import class_key, column_kinds, encode_frame, fit_tabular_spec, pick_target, read_table

        if cfg.normal and cfg.target is None:
            raise DataError("--normal needs --target: the label column whose values it names")
        frame, _, _ = read_table(cfg.source)
        notes = []
        if cfg.target is not None:
            target: str | None = pick_target(frame, cfg.target, None, cfg.source)
            frame = frame[frame[target].notna()].reset_index(drop=True)
            keys = [class_key(v) for v in frame[target].tolist()]
            counts = {k: keys.count(k) for k in dict.fromkeys(keys)}
            normal, note = normal_values(sorted(counts), counts, cfg, f"label column {target!r}")
            y = np.array([k not in normal for k in keys], dtype=bool)
            tr, va, te = one_class_split(y, cfg, cfg.source, "rows")
            notes.append(f"{note}; {int(y.sum())} anomalous rows of {len(y)}; training uses the "
                         f"{len(tr)} normal rows of the training split")
        else:
            target = None
            y = np.zeros(len(frame), dtype=bool)
            tr, va, te = random_split(len(frame), cfg, cfg.source, "rows")
            notes.append(_unlabelled_note(cfg, "table"))
            named = [c for c in frame.columns if str(c).lower() in LABEL_NAMES]
            if named:  # a likely label column read as a feature would make every anomaly "normal"
                notes.append(f"column {named[0]!r} is used as a feature; if it holds labels, pass --target {named[0]}")
        kinds = column_kinds(frame, target or "", tuple(cfg.categorical), tuple(cfg.numeric), cfg.source)
        spec = fit_tabular_spec(frame.iloc[tr], target or "", "classification", kinds)
        spec.update(kind="anomaly", input_kind="tabular", target=target)

        def x(idx: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(encode_frame(frame.iloc[idx], spec))

        meta = self._meta([int(spec["num_features"])], spec, notes)
        return DataBundle.from_indices(x, y.astype(np.int64), (tr, va, te), meta)

    def _load_images(self, cfg: DataConfig) -> DataBundle:
        import torch

        from automl.data.images import load_image_source
        from automl.data.preprocess import normalize
        from automl.tasks.image import channel_stats

        data = load_image_source(cfg.source, image_size=cfg.image_size)
        x_all, labels = data.x, data.y
        if data.x_test is not None and data.y_test is not None:  # one pool: the anomaly splits are our own
            x_all, labels = np.concatenate([x_all, data.x_test]), np.concatenate([labels, data.y_test])
        if not len(labels):
            raise DataError(f"--data {cfg.source}: no images found")
        if self._labelled(cfg):
            names = [str(data.classes[i]) for i in labels]
            counts = {c: names.count(c) for c in data.classes if c in names}
            normal, note = normal_values(list(counts), counts, cfg, f"the classes of {cfg.source}")
            y = np.array([n not in normal for n in names], dtype=bool)
            tr, va, te = one_class_split(y, cfg, cfg.source, "images")
            notes = [f"{note}; {int(y.sum())} anomalous images of {len(y)}"]
        else:
            y = np.zeros(len(labels), dtype=bool)
            tr, va, te = random_split(len(labels), cfg, cfg.source, "images")
            notes = [_unlabelled_note(cfg, "image set")]
        mean, std = channel_stats(x_all[tr])
        c, h, w = x_all.shape[1:]
        spec = {"kind": "anomaly", "input_kind": "image", "channels": int(c), "size": [int(h), int(w)],
                "mean": [float(m) for m in mean], "std": [float(s) for s in std]}

        def t(idx: np.ndarray) -> torch.Tensor:
            x = x_all[idx]
            return torch.from_numpy(normalize(x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x, spec))

        return DataBundle.from_indices(t, y.astype(np.int64), (tr, va, te), self._meta([int(c), int(h), int(w)],
                                                                                       spec, notes))

    def _meta(self, shape: list[int], spec: dict[str, Any], notes: list[str]) -> dict[str, Any]:
        spec["threshold"], spec["threshold_rule"] = None, "not chosen yet (set when best.pt is written)"
        if self._contamination is not None:
            spec["contamination"] = float(self._contamination)
        return {"task": self.name, "input_shape": shape, "num_classes": 1, "classes": [], "output_shape": [],
                "preprocess": spec, "notes": notes}

    # --- training and scoring ---------------------------------------------------------------------

    def loss_fn(self, label_smoothing: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The mean of the rows' scores: in train mode an autoencoder's forward gives each row's
        training loss (reconstruction error, negative ELBO), so this is the loss it minimises."""

        def loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return scores.float().mean()

        return loss

    # --- the metric: roc_auc, average_precision or f1 of the score (the anomaly is the positive class) ---

    def choose_metric(self, name: str | None, problem: str | None = None) -> None:
        """``--metric``: one of ``METRICS`` (a ConfigError listing them otherwise, one line)."""
        if name is not None and name not in METRICS:
            what = f"unknown metric {name!r} for" if name not in list_metrics() else f"--metric {name} does not fit"
            raise ConfigError(f"{what} the anomaly task (a score per row, anomalies the positive class); "
                              f"choose from: {', '.join(METRICS)}")
        super().choose_metric(name, problem)

    def use_stored_metric(self, name: str | None) -> None:
        """A study's or model file's metric; ``recon_error`` (no labels) is the data's, not a choice."""
        if name == "recon_error":
            self.metric, self.direction = name, "minimize"
            return
        super().use_stored_metric(name)

    def bind(self, bundle: DataBundle) -> None:
        """The anomaly (label 1) is the positive class however rare it is (training holds none); the
        validation targets are kept so that f1 knows a validation split from a test split."""
        self.positive = 1
        self._y_val = bundle.y_val.detach().cpu().reshape(-1).numpy()
        self._cuts = None
        bundle.meta["fit"] = {"metric": self.metric}

    def decision_threshold(self, val_outputs: torch.Tensor, y_val: torch.Tensor, meta: dict[str, Any]) -> float | None:
        """None: the anomaly threshold is in score units and is chosen by ``test_predictions``."""
        return None

    def metric_fn(self, threshold: float | None = None) -> Callable[[torch.Tensor, torch.Tensor], float]:
        """(scores, targets) -> ``score`` (f1: at ``threshold``, else at the cuts of this scorer's own
        ``SplitCuts``); NaN for a diverged model's non-finite scores (its trial stops)."""
        import torch

        cuts = SplitCuts(self._y_val, self._contamination)

        def metric(scores: torch.Tensor, y: torch.Tensor) -> float:
            s, t = scores.detach().float().reshape(-1).cpu(), y.detach().reshape(-1).cpu()
            if not bool(torch.isfinite(s).all()):
                return float("nan")
            self._recent = [*self._recent[-2:], (s, t)]  # the best model's validation scores give its threshold
            return self._score(s.numpy(), t.numpy(), threshold, cuts)

        return metric

    def score(self, pred: np.ndarray, y: np.ndarray, threshold: float | None = None) -> float:
        """The metric of anomaly scores ``pred`` (higher = more anomalous) against ``y`` (1 = anomaly)
        from the registry, the anomaly the positive class; f1 at ``threshold``, else at the validation
        split's chosen threshold (``SplitCuts``: the leaderboard scores validation, then test)."""
        if self._cuts is None:
            self._cuts = SplitCuts(self._y_val, self._contamination)
        return self._score(pred, y, threshold, self._cuts)

    def _score(self, pred: np.ndarray, y: np.ndarray, threshold: float | None, cuts: SplitCuts) -> float:
        spec = self.metric_spec
        t = np.asarray(y).reshape(-1).astype(np.int64)
        s = np.asarray(pred, dtype=np.float64).reshape(len(t), -1)[:, -1] if len(t) else np.zeros(0)
        if spec.thresholded and threshold is None and len(t):
            threshold = cuts.cut(s, t)
        return spec.score(s, t, 0.5 if threshold is None else threshold, positive=1)

    def reference_model(self, bundle: DataBundle) -> Reference | None:
        """scikit-learn's IsolationForest with default settings (``random_state=0``), fitted on exactly
        the training rows (normal ones only when there are labels); its score is ``-score_samples``."""
        if not self.metric_spec.labels:
            return None  # a reconstruction error of another model's scores would mean nothing
        from automl.models.iforest import fit_reference

        def flat(x: torch.Tensor) -> np.ndarray:
            return x.detach().cpu().reshape(len(x), -1).numpy().astype(np.float64)

        scorer = fit_reference(flat(bundle.x_train), seed=0)  # the iforest family's first trial, same estimator
        return "IsolationForest (sklearn defaults, same training rows)", lambda x: scorer(flat(x))

    def test_predictions(self, test_logits: torch.Tensor, bundle: DataBundle,
                         threshold: float | None = None) -> dict[str, Any]:
        """Chooses the best model's threshold on its validation scores (the evaluation ``automl.study``
        runs just before this one; maximum F1 for every metric) and stores it in the spec that best.pt
        and ONNX carry; then the test rows' scores, labels and decisions for best.json and the report.
        ``threshold`` (a binary classifier's probability cut) is always None here: see
        ``decision_threshold``."""
        import torch

        scores = test_logits.detach().float().reshape(-1).cpu()
        y_val = bundle.y_val.cpu()
        val = next((s for s, t in reversed(self._recent) if len(t) == len(y_val) and torch.equal(t, y_val)
                    and not (len(s) == len(scores) and torch.equal(s, scores))), None)
        spec = bundle.meta["preprocess"]
        if val is not None:
            labels = y_val.numpy() if self.metric_spec.labels else None
            spec["threshold"], spec["threshold_rule"] = choose_threshold(val.numpy(), labels, spec.get("contamination"))
        thr = spec.get("threshold")
        flags = [int(thr is not None and v >= thr) for v in scores.tolist()]
        return {"y_true": bundle.y_test.cpu().reshape(-1).tolist(), "y_pred": flags,
                "classes": ["normal", "anomaly"], "scores": [round(float(v), 6) for v in scores.tolist()],
                "threshold": thr}

    def distill_unsupported(self, bundle: DataBundle) -> str | None:
        return "distillation needs class logits; an anomaly model outputs a score"

    # --- in-memory data (tables, as the tabular task stores them), the model card ----------------
    memory_table_format = "parquet"
    card_tags = ("anomaly-detection",)  # Hugging Face has no anomaly pipeline: the tag says what the score is

    def in_memory_table(self, data: Any, target: str | None) -> tuple[Any, str | None]:
        """A DataFrame (``target``, the label column, optional) or ``(X, y)`` (y: the labels)."""
        from automl.tasks._frames import feature_table

        return feature_table(data, target)

    def card_pipeline_tag(self, data: dict[str, Any]) -> str:
        source = str(data.get("source") or "")
        return "image-classification" if source and is_image_source(source) else "tabular-classification"

    # --- raw inputs: tables and images, as their own tasks read them ------------------------------

    def _inner(self, spec: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
        """The task that reads this spec's raw inputs (tabular or image) and the spec in its terms;
        remembers the spec, whose threshold ``format_outputs`` applies."""
        from automl.tasks.image import ImageTask
        from automl.tasks.tabular import TabularTask

        self._spec = spec
        kind = spec.get("input_kind")
        if kind not in ("tabular", "image"):
            raise DataError(f"preprocess.input_kind must be tabular or image, got {str(kind)[:40]!r}")
        return (TabularTask() if kind == "tabular" else ImageTask()), {**spec, "kind": kind}

    def read_inputs(self, items: list[str], spec: dict[str, Any]) -> tuple[list[str], list[Any]]:
        task, inner = self._inner(spec)
        return task.read_inputs(items, inner)

    def feature_names(self, spec: dict[str, Any]) -> list[str]:
        task, inner = self._inner(spec)
        return task.feature_names(inner)

    def python_inputs(self, data: Any, spec: dict[str, Any]) -> list[Any]:
        task, inner = self._inner(spec)
        return task.python_inputs(data, inner)

    def encode_inputs(self, raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
        task, inner = self._inner(spec)
        return task.encode_inputs(raw, inner)

    def input_notes(self, raw: list[Any], spec: dict[str, Any]) -> tuple[list[str], list[dict[str, Any] | None]]:
        task, inner = self._inner(spec)
        return task.input_notes(raw, inner)

    def encode_json(self, inputs: list[Any], spec: dict[str, Any], options: dict[str, Any],
                    limits: InputLimits) -> np.ndarray | None:
        task, inner = self._inner(spec)
        return task.encode_json(inputs, inner, options, limits)

    def encode_files(self, files: list[tuple[str, bytes]], spec: dict[str, Any], limits: InputLimits) -> np.ndarray:
        task, inner = self._inner(spec)
        return task.encode_files(files, inner, limits)

    def validate_spec(self, spec: dict[str, Any]) -> None:
        import math

        task, inner = self._inner(spec)
        task.validate_spec(inner)
        thr = spec.get("threshold")
        if thr is not None and (isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr)):
            raise DataError(f"preprocess.threshold must be a finite number or null, got {str(thr)[:40]}")
        rule = spec.get("threshold_rule", "")
        if not isinstance(rule, str) or len(rule) > 500:
            raise DataError("preprocess.threshold_rule must be a text of at most 500 characters")

    def describe_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        task, inner = self._inner(spec)
        return {**task.describe_spec(inner), "kind": "anomaly", "input_kind": inner["kind"],
                "output": "score (higher = more anomalous); is_anomaly = score >= threshold",
                "threshold": spec.get("threshold"), "threshold_rule": spec.get("threshold_rule", "")}

    def format_outputs(self, outputs: np.ndarray, classes: list[str], top_k: int | None = None,
                       decision: Decision | None = None) -> list[dict[str, Any]]:
        """One ``{"score", "is_anomaly"}`` per row; ``is_anomaly`` is null when the model has no threshold."""
        thr = self._spec.get("threshold")
        out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)[:, -1]
        return [{"score": _num(v), "is_anomaly": None if thr is None else bool(v >= thr)} for v in out]


def _unlabelled_note(cfg: DataConfig, what: str) -> str:
    from automl.tasks._anomaly_data import DEFAULT_CONTAMINATION

    q = (f"--contamination {cfg.contamination:g}" if cfg.contamination is not None
         else f"no --contamination: the documented default {DEFAULT_CONTAMINATION:g}")
    return (f"no labels: every row of the {what} trains and models are chosen by held-out reconstruction "
            f"error (no labelled metric exists); the threshold flags the top share of held-out scores ({q})")
