"""The sections of the study report: Optuna's plots, the best trial's training curves, and the test
metrics of the best model (confusion matrix and per-class scores from ``sklearn.metrics``)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    import plotly.graph_objects as go
    from optuna.trial import FrozenTrial

#: section keys in report order, with their headings (the tests check every one is present)
SECTIONS: dict[str, str] = {
    "optimization_history": "Optimization history",
    "param_importances": "Parameter importances",
    "parallel_coordinate": "Parallel coordinates",
    "slice": "Slice plots",
    "intermediate_values": "Intermediate values (where the trial pruner stopped trials)",
    "training_curves": "Training curves of the best trial",
    "confusion_matrix": "Confusion matrix on the test split",
    "per_class": "Per-class precision, recall and F1 on the test split",
    "predictions": "Predicted vs true on the test split",
    "scores": "Scores of normal and anomalous test samples, ROC curve and threshold",
}
SLICE_PER_ROW = 4  # parameters per slice-plot figure
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass
class Section:
    """One part of the report: a plotly figure and/or extra HTML, or a note saying why it is absent."""

    key: str
    title: str
    figures: list[go.Figure] = field(default_factory=list)
    html: str = ""
    note: str = ""

    @property
    def drawn(self) -> bool:
        return bool(self.figures)


# --- metrics of the best model's test predictions -------------------------------------------------


def confusion_matrix(y_true: list[int], y_pred: list[int], n_classes: int) -> list[list[int]]:
    """``m[i][j]`` = test samples of true class i predicted as class j (``sklearn.metrics``)."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    return sk_confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).tolist()


def per_class_metrics(y_true: list[int], y_pred: list[int], n_classes: int) -> list[dict[str, float]]:
    """Precision, recall, F1 and support of each class (``sklearn.metrics``; 0 where undefined)."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(n_classes)), zero_division=0)
    return [{"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
            for a, b, c, d in zip(p, r, f, s, strict=True)]


# --- sections ------------------------------------------------------------------------------------


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _metric_name(study: optuna.Study) -> str:
    return (study.user_attrs.get("automl") or {}).get("metric") or "value"


def _optuna_sections(study: optuna.Study) -> list[Section]:
    import optuna.visualization as vis
    from optuna.importance import FanovaImportanceEvaluator

    metric = _metric_name(study)
    complete = _completed(study)
    n_params = len({p for t in complete for p in t.params})
    out: list[Section] = []
    # A multi-objective study: Optuna's plots need the objective to draw (the metric, the first value).
    kw: dict[str, Callable[[FrozenTrial], float]] = {"target": _first} if len(study.directions) > 1 else {}

    def add(key: str, make: Callable[[], go.Figure | list[go.Figure]], need: int = 1, why: str = "") -> None:
        title = SECTIONS[key]
        if len(complete) < need:
            why = why or f"needs {need} completed trial(s); the study has {len(complete)}"
            out.append(Section(key, title, note=why))
            return
        figs = make()
        figs = figs if isinstance(figs, list) else [figs]
        for fig in figs:
            fig.update_layout(height=fig.layout.height or 460)
        out.append(Section(key, title, figures=figs))

    add("optimization_history", lambda: vis.plot_optimization_history(study, target_name=metric, **kw))
    if n_params:
        # fANOVA raises on trials that all score the same (two default-tree trials on a tiny table do)
        if len(complete) >= 2 and len({kw["target"](t) if kw else t.value for t in complete}) == 1:
            out.append(Section("param_importances", SECTIONS["param_importances"],
                               note="every completed trial has the same value: no parameter explains a difference"))
        else:
            add("param_importances",
                lambda: vis.plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0),
                                                   target_name=metric, **kw),
                need=2)
        add("parallel_coordinate", lambda: vis.plot_parallel_coordinate(study, target_name=metric, **kw))
        add("slice", lambda: _slice_figures(study, metric))
    else:
        for key in ("param_importances", "parallel_coordinate", "slice"):
            out.append(Section(key, SECTIONS[key], note="the completed trials have no parameters"))
    out.append(_intermediate_section(study))
    return out


def _slice_figures(study: optuna.Study, metric: str, per_row: int = SLICE_PER_ROW) -> list[go.Figure]:
    """Optuna's slice plot, a few parameters per figure so each panel stays readable."""
    import optuna.visualization as vis

    names = sorted({p for t in _completed(study) for p in t.params})
    size = math.ceil(len(names) / math.ceil(len(names) / per_row)) if names else 1  # 9 -> 3+3+3, not 4+4+1
    chunks = [names[i:i + size] for i in range(0, len(names), size)]
    figs = []
    kw: dict[str, Callable[[FrozenTrial], float]] = {"target": _first} if len(study.directions) > 1 else {}
    for i, chunk in enumerate(chunks):
        fig = vis.plot_slice(study, params=chunk, target_name=metric, **kw)
        suffix = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
        fig.update_layout(title=f"Slice Plot{suffix}", width=None, autosize=True, height=420)
        figs.append(fig)
    return figs


def _intermediate_section(study: optuna.Study) -> Section:
    """Optuna's intermediate-values plot plus a marker where each pruned trial was stopped."""
    import optuna.visualization as vis
    import plotly.graph_objects as go

    key, title = "intermediate_values", SECTIONS["intermediate_values"]
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials and len(study.directions) > 1:
        return Section(key, title, note="a multi-objective study: Optuna keeps no intermediate values for it; "
                                        "the cost-aware trial pruner's stops are in the trials table above")
    if not trials:
        return Section(key, title, note="no trial reported intermediate values")
    fig = vis.plot_intermediate_values(study)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    if pruned:
        xs, ys, text = [], [], []
        for t in pruned:
            step = max(t.intermediate_values)
            xs.append(step)
            ys.append(t.intermediate_values[step])
            reason = t.user_attrs.get("prune_reason") or f"stopped after epoch {step}"
            text.append(f"trial {t.number}: {reason}")
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name="pruned here", text=text, hovertemplate="%{text}<extra></extra>",
            marker={"symbol": "x", "size": 12, "color": "crimson", "line": {"width": 2}},
        ))
    fig.update_layout(xaxis_title="Epoch", yaxis_title=f"val {_metric_name(study)}", height=460)
    if max(max(t.intermediate_values) for t in trials) <= 20:
        fig.update_xaxes(dtick=1)
    note = f"{len(pruned)} of {len(trials)} trials were stopped by the trial pruner"
    return Section(key, title, figures=[fig], note=note)


def _training_curves(study: optuna.Study) -> Section:
    """Train and validation loss, and the validation metric, per epoch of the best trial."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from automl.runtime.latency import stored_max_latency_ms
    from automl.search.moo import pick_best

    key = "training_curves"
    try:
        best = pick_best(study, stored_max_latency_ms(study.user_attrs.get("automl") or {}))
    except (ValueError, RuntimeError):
        return Section(key, SECTIONS[key], note="no completed trial")
    metric = _metric_name(study)
    title = f"{SECTIONS[key]} (#{best.number})"
    history = best.user_attrs.get("history") or []
    if not history and not best.intermediate_values:
        return Section(key, title, note=f"trial {best.number} recorded no per-epoch history")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", f"val {metric}"))
    if history:
        epochs = [int(r["epoch"]) for r in history]
        for name, dash in (("train_loss", None), ("val_loss", "dash")):
            ys = [r.get(name) for r in history]
            fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", name=name.replace("_", " "),
                                     line={"dash": dash}), row=1, col=1)
        metric_x, metric_y = epochs, [r.get("val_metric") for r in history]
    else:
        metric_x = sorted(best.intermediate_values)
        metric_y = [best.intermediate_values[s] for s in metric_x]
    fig.add_trace(go.Scatter(x=metric_x, y=metric_y, mode="lines+markers", name=f"val {metric}"), row=1, col=2)
    fig.update_xaxes(title_text="Epoch", dtick=1 if len(metric_x) <= 20 else None)
    fig.update_layout(title=f"Training curves of trial {best.number}", height=420)
    return Section(key, title, figures=[fig])


def _fmt(v: object, digits: int = 4) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[object]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _on_labels(best_test: dict[str, object]) -> bool:
    """Whether the test predictions are class labels, as the study's metric says (``Metric.labels``);
    a metric this process does not know counts as labels where the study stored classes."""
    from automl.exceptions import ConfigError
    from automl.tasks import get_metric

    try:
        return get_metric(str(best_test.get("metric"))).labels
    except ConfigError:
        return True


def _test_sections(study: optuna.Study) -> list[Section]:
    """Confusion matrix and per-class metrics (classification) or predicted vs true (regression)."""
    import plotly.graph_objects as go

    bt = study.user_attrs.get("best_test")
    keys = ("confusion_matrix", "per_class", "predictions")
    if not bt or not bt.get("y_true"):
        why = "the study has no test predictions of its best model (they are written when a search ends)"
        return [Section(k, SECTIONS[k], note=why) for k in keys]
    y_true, y_pred, classes = bt["y_true"], bt["y_pred"], [str(c) for c in bt.get("classes") or []]
    origin = f"best model: trial {bt.get('trial')}, test {bt.get('metric', 'metric')} {_fmt(bt.get('value'))}"
    if not classes or not _on_labels(bt):
        fig = go.Figure(go.Scatter(x=list(map(float, y_true)), y=list(map(float, y_pred)), mode="markers",
                                   name="test samples", marker={"opacity": 0.6}))
        lo, hi = min(min(y_true), min(y_pred)), max(max(y_true), max(y_pred))
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"dash": "dot"}))
        fig.update_layout(title="Predicted vs true", xaxis_title="true", yaxis_title="predicted", height=480)
        note = "classification only"
        return [Section("confusion_matrix", SECTIONS["confusion_matrix"], note=note),
                Section("per_class", SECTIONS["per_class"], note=note),
                Section("predictions", SECTIONS["predictions"], figures=[fig], note=origin)]
    n = len(classes)
    matrix = confusion_matrix(y_true, y_pred, n)
    cm = go.Figure(go.Heatmap(
        z=matrix, x=classes, y=classes, colorscale="Blues", texttemplate="%{z}",
        hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
    ))
    cm.update_layout(title="Confusion matrix", xaxis_title="predicted", yaxis_title="true",
                     yaxis_autorange="reversed", xaxis_type="category", yaxis_type="category",
                     height=max(420, 40 * n + 160), width=max(520, 40 * n + 240))
    metrics = per_class_metrics(y_true, y_pred, n)
    bars = go.Figure([
        go.Bar(x=classes, y=[m[name] for m in metrics], name=name) for name in ("precision", "recall", "f1")
    ])
    bars.update_layout(title="Per-class precision, recall and F1", barmode="group", yaxis_range=[0, 1.05],
                       xaxis_type="category", xaxis_title="class", height=420)
    accuracy = sum(matrix[k][k] for k in range(n)) / max(1, len(y_true))
    macro = {k: sum(m[k] for m in metrics) / n for k in ("precision", "recall", "f1")}
    rows = [[c, m["precision"], m["recall"], m["f1"], m["support"]] for c, m in zip(classes, metrics, strict=True)]
    rows.append(["macro average", macro["precision"], macro["recall"], macro["f1"], len(y_true)])
    table = _table(["class", "precision", "recall", "F1", "support"], rows, "metrics")
    table += f"<p>accuracy {accuracy:.4f} on {len(y_true)} test samples</p>"
    return [Section("confusion_matrix", SECTIONS["confusion_matrix"], figures=[cm], note=origin),
            Section("per_class", SECTIONS["per_class"], figures=[bars], html=table, note=origin)]


def _score_sections(study: optuna.Study) -> list[Section]:
    """A task whose best model outputs a score per sample (``test_predictions`` gives ``scores``, binary
    ``y_true`` and maybe a ``threshold``: the anomaly task): histograms of the two classes' scores and
    the ROC curve (``sklearn.metrics.roc_curve``), each marking the threshold. Other studies: none."""
    import plotly.graph_objects as go
    from sklearn.metrics import roc_auc_score, roc_curve

    bt = study.user_attrs.get("best_test") or {}
    scores, y = bt.get("scores"), bt.get("y_true")
    if not scores or not y or len(scores) != len(y) or len(set(y)) != 2:
        return []
    names = [str(c) for c in bt.get("classes") or ["0", "1"]]
    thr = bt.get("threshold")
    hist = go.Figure([go.Histogram(x=[s for s, t in zip(scores, y, strict=True) if t == k], name=names[k],
                                   opacity=0.6, histnorm="probability") for k in (0, 1)])
    fpr, tpr, cuts = roc_curve(y, scores)
    roc = go.Figure(go.Scatter(x=fpr.tolist(), y=tpr.tolist(), mode="lines", name="ROC"))
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot"}))
    if isinstance(thr, (int, float)):
        hist.add_vline(x=float(thr), line_dash="dash", annotation_text=f"threshold {thr:.4g}")
        at = sum(1 for c in cuts if c >= thr) - 1  # the ROC point of the threshold: the last cut at or above it
        if 0 <= at < len(fpr):
            roc.add_trace(go.Scatter(x=[float(fpr[at])], y=[float(tpr[at])], mode="markers", name="threshold",
                                     marker={"size": 11}))
    hist.update_layout(title="Score histograms", barmode="overlay", xaxis_title="score", height=420)
    roc.update_layout(title=f"ROC curve (AUROC {roc_auc_score(y, scores):.4f})", xaxis_title="false positive rate",
                      yaxis_title="true positive rate", height=420, width=520)
    note = f"threshold {_fmt(thr)}" if thr is not None else "no threshold stored"
    return [Section("scores", SECTIONS["scores"], figures=[hist, roc], note=note)]


def _first(trial: FrozenTrial) -> float:
    """The metric of a trial of a multi-objective study (its first value)."""
    return float(trial.values[0])


def build_sections(study: optuna.Study) -> list[Section]:
    """Every section of the report, in order (absent ones carry a note saying why)."""
    return [*_optuna_sections(study), _training_curves(study), *_test_sections(study), *_score_sections(study)]
