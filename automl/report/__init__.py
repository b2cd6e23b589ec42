"""The HTML report of a study: one self-contained file (plotly.js embedded, opens with no network).

Optuna's own plots (optimisation history, parameter importances, parallel coordinates, slice,
intermediate values) plus what Optuna lacks, drawn from what the search records: the best trial's
per-epoch training curves (user attr ``history``) and, from the study's ``best_test`` user attr, the
confusion matrix and per-class precision/recall/F1 on the test split (predicted vs true for
regression).
"""

from __future__ import annotations

import html
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from automl.exceptions import ArtifactError
from automl.report._sections import (
    PLOT_CONFIG,
    SECTIONS,
    Section,
    _fmt,
    _table,
    build_sections,
    confusion_matrix,
    per_class_metrics,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["SECTIONS", "ReportResult", "Section", "build_sections", "confusion_matrix", "default_report_path",
           "per_class_metrics", "render_html", "report_command", "write_report"]


@dataclass
class ReportResult:
    """What ``write_report`` returns (and ``automl report --json`` prints)."""

    study: str
    path: str
    bytes: int
    figures: list[str] = field(default_factory=list)  # keys of the drawn sections
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why it is not drawn

    def to_json(self) -> dict[str, object]:
        return {"study": self.study, "report": self.path, "bytes": self.bytes, "figures": self.figures,
                "skipped": self.skipped}


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


def _summary_html(study: optuna.Study) -> str:
    from automl.study.trials import list_trials, states_line, trials_summary

    config = study.user_attrs.get("automl") or {}
    rows = list_trials(study, sort="value")
    summary = trials_summary(study, rows)
    bt = study.user_attrs.get("best_test") or {}
    items: list[list[object]] = [
        ["study", study.study_name],
        ["task", config.get("task", "?")],
        ["data", (config.get("data") or {}).get("source", "?")],
        ["metric", f"{config.get('metric', 'value')} ({summary['direction']})"],
        ["trials", states_line(summary) or "none"],
    ]
    if summary["best_trial"] is not None:
        # the best.pt pick (a multi-objective study has no single best_trial)
        best = next(t for t in study.get_trials(deepcopy=False) if t.number == summary["best_trial"])
        items += [["best trial", best.number], [f"best val {config.get('metric', 'value')}", best.values[0]],
                  ["best params", ", ".join(f"{k}={_param(v)}" for k, v in best.params.items())]]
    if bt:
        items.append([f"test {bt.get('metric', 'metric')} (trial {bt.get('trial')})", bt.get("value")])
        if isinstance(bt.get("threshold"), (int, float)):  # binary f1 / balanced_accuracy / accuracy
            items.append(["decision threshold", f"{float(bt['threshold']):.4f} (positive class from this "
                                                "probability; chosen on validation)"])
    head = _table(["", ""], items, "summary").replace("<thead><tr><th></th><th></th></tr></thead>", "")
    trial_rows = []
    for r in rows:
        value: object = r.value
        if value is None:
            value = f"({_fmt(r.last_value)} at stop)" if r.last_value is not None else ""
        epochs = "" if r.epochs is None else str(r.epochs)
        if r.pruned_at_epoch is not None:
            epochs += f" (stopped at {r.pruned_at_epoch})"
        params = ", ".join(f"{k}={_param(v)}" for k, v in r.params.items())
        duration = "" if r.duration is None else f"{r.duration:.1f} s"
        trial_rows.append([r.number, r.label, value, duration, epochs, params, r.reason or ""])
    trials = _table(["#", "state", "value", "duration", "epochs", "params", "reason"], trial_rows, "trials")
    return head + _leaderboard_html(study, config) + "<h2>Trials</h2>" + trials


def _param(v: object) -> str:
    """A hyperparameter as the search drew it: 4 significant digits (``6e-06``, not ``0.0000``)."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)  # (the table escapes its cells)


def _leaderboard_html(study: optuna.Study, config: dict[str, object]) -> str:
    """Each model family's best trial against the classic reference (study user attr ``leaderboard``,
    written by the search; rebuilt from the trials for a study that has none)."""
    board = study.user_attrs.get("leaderboard")
    if not isinstance(board, dict) or not isinstance(board.get("rows"), list):
        from automl.search.leaderboard import leaderboard

        board = leaderboard(study, str(config.get("task", "")), "", str(config.get("metric", "value")),
                            str(config.get("direction", "maximize")), study.user_attrs.get("best_test"))
    metric = str(board.get("metric", "value"))
    rows = []
    for r in board["rows"]:
        if not isinstance(r, dict):
            continue
        if r.get("kind") == "reference":
            rows.append([f"reference: {r.get('model', '')}", "", "", r.get("val"), r.get("test")])
        else:
            rows.append([r.get("name"), f"{r.get('complete')}/{r.get('trials')}",
                         "" if r.get("best_trial") is None else r.get("best_trial"), r.get("val"), r.get("test")])
    if not rows:
        return ""
    better = "higher" if board.get("direction") == "maximize" else "lower"
    # the classic reference is named only where the study has one (image studies fit none)
    has_ref = any(isinstance(r, dict) and r.get("kind") == "reference" for r in board["rows"])
    what = "each model family's best trial" + (" and a classic reference fitted on the same split" if has_ref else "")
    return (f'<h2 id="leaderboard">Leaderboard</h2><p class="muted">{html.escape(what)} ({metric}, {better} is '
            f'better)</p>'
            + _table(["model", "complete/trials", "best trial", f"val {metric}", f"test {metric}"], rows,
                     "leaderboard"))


def render_html(study: optuna.Study, sections: list[Section]) -> str:
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


def write_report(study: optuna.Study, out: str | Path) -> ReportResult:
    """Write the report of ``study`` to ``out`` (a file, or a folder to hold report.html), atomically."""
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        path = path / "report.html"
    _check_writable(path)
    from automl.report._pareto import report_sections

    sections = report_sections(study)  # build_sections, after the Pareto front of a multi-objective study
    text = render_html(study, sections)
    text = text.replace("</body></html>", _lineage_script(study, path, sections) + "</body></html>")
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


def _lineage_script(study: optuna.Study, path: Path, sections: list[Section]) -> str:
    """The report's lineage record (``automl.lineage``) as an inert JSON script element: the study and its
    best trial, and best.pt beside the report (its usual place) as the parent, by SHA-256."""
    import json

    from automl.lineage import make_record, parent_entry

    best = study.user_attrs.get("best_test") or {}
    beside = path.parent / "best.pt"
    parents = [parent_entry(beside, child_dir=path.parent)] if beside.is_file() else []
    metrics = {"metric": best.get("metric"), f"test_{best.get('metric')}": best.get("value")} if best else {}
    rec = make_record("report", [{"step": "report", "settings": {"sections": [s.key for s in sections if s.drawn]}}],
                      parents=parents, study={"name": study.study_name, "trial": best.get("trial")}, metrics=metrics)
    text = json.dumps(rec).replace("</", "<\\/")  # "</script>" cannot end the element early; JSON reads "\/" as "/"
    return f'<script type="application/json" id="automl-lineage">{text}</script>'


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
