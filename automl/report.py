"""The HTML report of a study: one self-contained file (plotly.js embedded, opens with no network).

Optuna's own plots (optimisation history, parameter importances, parallel coordinates, slice,
intermediate values) plus what Optuna lacks, drawn from what the search records: the best trial's
per-epoch training curves (user attr ``history``) and, from the study's ``best_test`` user attr, the
confusion matrix and per-class precision/recall/F1 on the test split (predicted vs true for
regression).
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from automl.exceptions import ArtifactError

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
}
SLICE_PER_ROW = 4  # parameters per slice-plot figure
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass
class Section:
    """One part of the report: a plotly figure and/or extra HTML, or a note saying why it is absent."""

    key: str
    title: str
    figures: list[Any] = field(default_factory=list)
    html: str = ""
    note: str = ""

    @property
    def drawn(self) -> bool:
        return bool(self.figures)


@dataclass
class ReportResult:
    """What ``write_report`` returns (and ``automl report --json`` prints)."""

    study: str
    path: str
    bytes: int
    figures: list[str] = field(default_factory=list)  # keys of the drawn sections
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why it is not drawn

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "report": self.path, "bytes": self.bytes, "figures": self.figures,
                "skipped": self.skipped}


# --- metrics of the best model's test predictions -------------------------------------------------


def confusion_matrix(y_true: list[int], y_pred: list[int], n_classes: int) -> list[list[int]]:
    """``m[i][j]`` = test samples of true class i predicted as class j."""
    m = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(y_true, y_pred, strict=True):
        m[int(t)][int(p)] += 1
    return m


def per_class_metrics(matrix: list[list[int]]) -> list[dict[str, float]]:
    """Precision, recall, F1 and support of each class from a confusion matrix (0 where undefined)."""
    n = len(matrix)
    rows = []
    for k in range(n):
        tp = matrix[k][k]
        predicted = sum(matrix[i][k] for i in range(n))
        support = sum(matrix[k])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


# --- sections ------------------------------------------------------------------------------------


def _completed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _metric_name(study: Any) -> str:
    return (study.user_attrs.get("automl") or {}).get("metric") or "value"


def _optuna_sections(study: Any) -> list[Section]:
    import optuna.visualization as vis
    from optuna.importance import FanovaImportanceEvaluator

    metric = _metric_name(study)
    complete = _completed(study)
    n_params = len({p for t in complete for p in t.params})
    out: list[Section] = []

    def add(key: str, make: Any, need: int = 1, why: str = "") -> None:
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

    add("optimization_history", lambda: vis.plot_optimization_history(study, target_name=metric))
    if n_params:
        add("param_importances",
            lambda: vis.plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), target_name=metric),
            need=2)
        add("parallel_coordinate", lambda: vis.plot_parallel_coordinate(study, target_name=metric))
        add("slice", lambda: _slice_figures(study, metric))
    else:
        for key in ("param_importances", "parallel_coordinate", "slice"):
            out.append(Section(key, SECTIONS[key], note="the completed trials have no parameters"))
    out.append(_intermediate_section(study))
    return out


def _slice_figures(study: Any, metric: str, per_row: int = SLICE_PER_ROW) -> list[Any]:
    """Optuna's slice plot, a few parameters per figure so each panel stays readable."""
    import optuna.visualization as vis

    names = sorted({p for t in _completed(study) for p in t.params})
    size = math.ceil(len(names) / math.ceil(len(names) / per_row)) if names else 1  # 9 -> 3+3+3, not 4+4+1
    chunks = [names[i:i + size] for i in range(0, len(names), size)]
    figs = []
    for i, chunk in enumerate(chunks):
        fig = vis.plot_slice(study, params=chunk, target_name=metric)
        suffix = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
        fig.update_layout(title=f"Slice Plot{suffix}", width=None, autosize=True, height=420)
        figs.append(fig)
    return figs


def _intermediate_section(study: Any) -> Section:
    """Optuna's intermediate-values plot plus a marker where each pruned trial was stopped."""
    import optuna.visualization as vis
    import plotly.graph_objects as go

    key, title = "intermediate_values", SECTIONS["intermediate_values"]
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
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


def _training_curves(study: Any) -> Section:
    """Train and validation loss, and the validation metric, per epoch of the best trial."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    key = "training_curves"
    try:
        best = study.best_trial
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


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _test_sections(study: Any) -> list[Section]:
    """Confusion matrix and per-class metrics (classification) or predicted vs true (regression)."""
    import plotly.graph_objects as go

    bt = study.user_attrs.get("best_test")
    keys = ("confusion_matrix", "per_class", "predictions")
    if not bt or not bt.get("y_true"):
        why = "the study has no test predictions of its best model (they are written when a search ends)"
        return [Section(k, SECTIONS[k], note=why) for k in keys]
    y_true, y_pred, classes = bt["y_true"], bt["y_pred"], [str(c) for c in bt.get("classes") or []]
    origin = f"best model: trial {bt.get('trial')}, test {bt.get('metric', 'metric')} {_fmt(bt.get('value'))}"
    if not classes:
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
    metrics = per_class_metrics(matrix)
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


def build_sections(study: Any) -> list[Section]:
    """Every section of the report, in order (absent ones carry a note saying why)."""
    return [*_optuna_sections(study), _training_curves(study), *_test_sections(study)]


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;
  padding:0 16px;color:#222}
h1{margin-bottom:4px} h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;
  text-align:left;vertical-align:top} th{background:#f4f4f4}
.note{color:#666;font-style:italic} .plot{overflow-x:auto} .muted{color:#666}
.state-pruned{color:#b36b00} .state-fail{color:#b00020} .state-complete{color:#1b7f3b}
"""


def _summary_html(study: Any) -> str:
    from automl.trials import list_trials, trials_summary

    config = study.user_attrs.get("automl") or {}
    rows = list_trials(study, sort="value")
    summary = trials_summary(study, rows)
    bt = study.user_attrs.get("best_test") or {}
    items: list[list[Any]] = [
        ["study", study.study_name],
        ["task", config.get("task", "?")],
        ["data", (config.get("data") or {}).get("source", "?")],
        ["metric", f"{config.get('metric', 'value')} ({summary['direction']})"],
        ["trials", ", ".join(f"{n} {s}" for s, n in summary["states"].items()) or "none"],
    ]
    if summary["best_trial"] is not None:
        best = study.best_trial
        items += [["best trial", best.number], [f"best val {config.get('metric', 'value')}", best.value],
                  ["best params", ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())]]
    if bt:
        items.append([f"test {bt.get('metric', 'metric')} (trial {bt.get('trial')})", bt.get("value")])
    head = _table(["", ""], items, "summary").replace("<thead><tr><th></th><th></th></tr></thead>", "")
    trial_rows = []
    for r in rows:
        value: Any = r.value
        if value is None:
            value = f"({_fmt(r.last_value)} at stop)" if r.last_value is not None else ""
        epochs = "" if r.epochs is None else str(r.epochs)
        if r.pruned_at_epoch is not None:
            epochs += f" (stopped at {r.pruned_at_epoch})"
        params = ", ".join(f"{k}={_fmt(v, 4)}" for k, v in r.params.items())
        duration = "" if r.duration is None else f"{r.duration:.1f} s"
        trial_rows.append([r.number, r.state, value, duration, epochs, params, r.reason or ""])
    trials = _table(["#", "state", "value", "duration", "epochs", "params", "reason"], trial_rows, "trials")
    return head + "<h2>Trials</h2>" + trials


def render_html(study: Any, sections: list[Section]) -> str:
    """The report as one HTML string with plotly.js inlined (no network needed to open it)."""
    import optuna
    from plotly.offline import get_plotlyjs

    try:
        from importlib.metadata import version

        automl_version = version("automl")
    except Exception:  # not installed (a source checkout)
        automl_version = "?"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>automl report: {html.escape(study.study_name)}</title>",
        f"<style>{_CSS}</style>",
        # </script> cannot occur inside plotly.min.js, so inlining it verbatim is safe.
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>Study '{html.escape(study.study_name)}'</h1>",
        f'<p class="muted">automl {automl_version} · optuna {optuna.__version__} · written {when}</p>',
        _summary_html(study),
    ]
    for s in sections:
        parts.append(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>')
        if s.note:
            parts.append(f'<p class="note">{html.escape(s.note)}</p>')
        for i, fig in enumerate(s.figures):
            div_id = f"fig-{s.key}" + (f"-{i + 1}" if i else "")
            div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
            parts.append(f'<div class="plot">{div}</div>')
        if s.html:
            parts.append(s.html)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def default_report_path(study_name: str, out_dir: str | Path = "runs") -> Path:
    """``<out_dir>/<study>/report.html``, beside the study's best.pt."""
    return Path(out_dir) / study_name / "report.html"


def write_report(study: Any, out: str | Path) -> ReportResult:
    """Write the report of ``study`` to ``out`` (a file, or a folder to hold report.html), atomically."""
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        path = path / "report.html"
    _check_writable(path)
    sections = build_sections(study)
    text = render_html(study, sections)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".tmp", dir=path.parent)
        from automl.artifacts import new_file_mode

        os.fchmod(fd, new_file_mode())  # the one rule for files automl writes (see new_file_mode)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ArtifactError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    return ReportResult(
        study=study.study_name, path=str(path), bytes=path.stat().st_size,
        figures=[s.key for s in sections if s.drawn], skipped={s.key: s.note for s in sections if not s.drawn},
    )


def _check_writable(path: Path) -> None:
    """Fail before the plots are built when ``path`` cannot be written (a file in the way of its folder,
    or a folder without write permission)."""
    if path.is_dir():
        raise ArtifactError(f"cannot write the report to {path}: it is a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ArtifactError(f"cannot write the report to {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ArtifactError(f"cannot write the report to {path}: {parent} is not writable")


def report_command(study: str, storage_url: str, out_dir: str | Path) -> str:
    """The shortest ``automl report`` command line that opens this study's report."""
    import shlex

    from automl.study import redact

    out_dir = Path(out_dir)
    cmd = f"automl report --study {shlex.quote(study)}"
    defaults = (f"sqlite:///{(out_dir / 'automl.db').resolve()}", str((out_dir / "journal.log").resolve()))
    if storage_url not in defaults:
        cmd += f" --storage {shlex.quote(redact(storage_url))}"
    if out_dir.resolve() != Path("runs").resolve():  # the report goes beside best.pt
        cmd += f" --out-dir {shlex.quote(str(out_dir))}"
    return cmd


def figures_json(section: Section) -> list[dict[str, Any]]:
    """A section's figures as plain JSON (what the page hands to plotly.js)."""
    return [json.loads(fig.to_json()) for fig in section.figures]
