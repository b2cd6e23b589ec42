"""Read a finished (or running) study: open it read-only and list its trials as plain rows.

Shared by ``automl trials``, ``automl report`` and ``automl dashboard``: none of them may create a
database or a study, so a wrong path or name is an error that lists what exists instead.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError, StorageError

SORT_KEYS = ("number", "value", "duration")
DEFAULT_OUT_DIR = "runs"


def default_storages(out_dir: str | Path = DEFAULT_OUT_DIR) -> list[str]:
    """The storages ``automl search`` writes under ``out_dir`` that exist: ``automl.db`` (SQLite) and
    ``journal.log`` (what ``--jobs N`` uses instead)."""
    out = Path(out_dir)
    found = []
    if (out / "automl.db").is_file():
        found.append(f"sqlite:///{(out / 'automl.db').resolve()}")
    if (out / "journal.log").is_file():
        found.append(str((out / "journal.log").resolve()))
    return found


def existing_storage_url(storage: str | None, out_dir: str | Path = DEFAULT_OUT_DIR, study: str | None = None) -> str:
    """The storage URL of an existing study database; never creates a file or a folder.

    ``None`` means the search's default under ``out_dir`` (``automl.db``, or ``journal.log`` after a
    ``--jobs`` search; the one holding ``study`` when both exist). A SQLite or journal file that does
    not exist is a StorageError (opening it would silently create an empty one).
    """
    if storage is None:
        found = default_storages(out_dir)
        if not found:
            db = Path(out_dir) / "automl.db"
            raise StorageError(f"no study database at {db} (run 'automl search' first, or pass --storage URL)")
        if len(found) > 1 and study is not None:
            from automl.study.storage import open_storage, study_names

            for url in found:
                with contextlib.suppress(Exception):
                    if study in study_names(open_storage(url)):
                        return url
        return found[0]
    from automl.study.storage import JOURNAL_SUFFIXES, SQLITE_SUFFIXES, resolve_storage, sqlite_file

    if "://" not in storage:
        if storage.endswith(SQLITE_SUFFIXES + JOURNAL_SUFFIXES) and not Path(storage).is_file():
            raise StorageError(f"no study database at {storage}")
    else:
        file = sqlite_file(storage)
        if file is not None and not file.is_file():
            raise StorageError(f"no study database at {file} (from --storage {storage})")
    # Validates the scheme (postgresql, mysql, …); for existing files it creates nothing.
    return resolve_storage(storage, Path(out_dir))


def load_study(storage: str | None, study: str | None, out_dir: str | Path = DEFAULT_OUT_DIR) -> Any:
    """Load an existing study; ``study=None`` picks the only one. Errors list the known studies."""
    import optuna

    from automl.study.storage import first_line, open_storage, redact, silence_optuna, study_names

    silence_optuna()
    url = existing_storage_url(storage, out_dir, study)
    backend = open_storage(url)
    try:
        names = study_names(backend)
    except Exception as exc:  # e.g. a file that is not an Optuna database
        raise StorageError(f"cannot read studies from {redact(url)}: {first_line(exc)}") from None
    if study is None and len(names) > 1:  # studies with no trials (failed runs) are never the default
        names = [s.study_name for s in optuna.get_all_study_summaries(backend) if s.n_trials] or names
    name = pick_study(names, study, url)
    return optuna.load_study(study_name=name, storage=backend)


def pick_study(names: list[str], study: str | None, url: str, need_one: bool = True) -> str | None:
    """Check ``study`` against the storage's ``names``; ``None`` picks the only study when
    ``need_one``. Errors say what exists: no studies at all, or the known names."""
    from automl.study.storage import redact

    if not names:
        raise StorageError(f"storage {redact(url)} holds no studies (run 'automl search' first)")
    if study is None:
        if not need_one:
            return None
        if len(names) > 1:
            raise ConfigError(f"storage holds {len(names)} studies; pass --study NAME (one of: {', '.join(names)})")
        return names[0]
    if study not in names:
        raise StorageError(f"no study '{study}' in {redact(url)} (known: {', '.join(names)})")
    return study


@dataclass
class TrialRow:
    """One trial as plain values (what ``automl trials --json`` prints)."""

    number: int
    state: str
    value: float | None
    duration: float | None  # seconds from start to end (None while running)
    epochs: int | None
    params: dict[str, Any]
    reason: str | None = None  # why it was pruned or failed
    pruned_at_epoch: int | None = None
    last_value: float | None = None  # last intermediate value (where a pruned trial stood)
    device: str | None = None
    n_params: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    score: dict[str, Any] | None = None  # --score: FP32 and quantized figures (automl.runtime.int8.trial_score)
    # measured costs (latency ms on the study's target, MACs, ONNX bytes, weights) where the trial
    # recorded them: a latency budget or cost objectives
    costs: dict[str, Any] | None = None
    folds: int | None = None  # --cv: the folds its epochs were spread over
    stopped: str | None = None  # "deadline": completed, cut short by --timeout at its last completed epoch

    @property
    def label(self) -> str:
        """The state as tables show it: ``complete (deadline)`` for a trial the deadline cut short."""
        return state_label(self.state, self.stopped)

    def to_json(self, with_history: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_history:
            out.pop("history")
        for key in ("score", "costs", "folds"):  # only the studies that record them carry them
            if out[key] is None:
                out.pop(key)
        return out


def epochs_text(epochs: int | None, folds: int | None = None) -> str:
    """``9 epochs``, or ``45 epochs over 5 folds`` for a cross-validated trial (its epochs count every
    fold, while a deadline or a pruner speaks of the fold it stopped in)."""
    if epochs is None:
        return ""
    text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    return f"{text} over {folds} folds" if folds and folds > 1 else text


def folds_of(history: list[dict[str, Any]]) -> int | None:
    """How many cross-validation folds a trial's epoch history spans (None: not cross-validated)."""
    folds = {r.get("fold") for r in history if isinstance(r, dict) and r.get("fold") is not None}
    return len(folds) or None


def state_label(state: str, stopped: str | None) -> str:
    """A trial's state for people: Optuna's, with ``(deadline)`` for a completed trial the deadline cut short."""
    return f"{state} ({stopped})" if stopped and state == "complete" else state


def states_line(summary: dict[str, Any]) -> str:
    """``3 complete (1 stopped by the deadline), 2 pruned``: the trial counts of ``trials_summary``."""
    cut = summary.get("deadline_stopped") or 0
    parts = [f"{n} {s}" + (f" ({cut} stopped by the deadline)" if s == "complete" and cut else "")
             for s, n in summary["states"].items()]
    return ", ".join(parts)


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def trial_row(t: Any) -> TrialRow:
    """A FrozenTrial as a TrialRow."""
    from automl.runtime.int8 import trial_score
    from automl.search.moo import COST_ATTRS

    attrs = t.user_attrs
    duration = t.duration.total_seconds() if t.duration is not None else None
    if duration is None and attrs.get("seconds") is not None and t.state.name != "RUNNING":
        duration = float(attrs["seconds"])
    history = list(attrs.get("history") or [])
    epochs = attrs.get("epochs")
    if epochs is None and history:
        epochs = len(history)
    pruned_at = attrs.get("pruned_at_epoch")
    if t.state.name == "PRUNED" and pruned_at is None and t.intermediate_values:
        pruned_at = max(t.intermediate_values)  # trials pruned by hand or by an older automl
    last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
    reason = attrs.get("prune_reason") or attrs.get("fail_reason")
    stopped = attrs.get("stopped") if t.state.name == "COMPLETE" else None  # automl.search.objective_deadline
    if stopped:
        reason = attrs.get("stop_reason") or f"stopped by the {stopped}"
    if reason is None and t.state.name == "FAIL":
        # Failed by Optuna when its heartbeats stopped: the reason the trial recorded when it started.
        reason = attrs.get("stale_reason")
    if reason is None and t.state.name == "PRUNED":
        reason = f"trial pruner stopped it after epoch {pruned_at}" if pruned_at is not None else "pruned"
    # Optuna gives a pruned trial its last intermediate value; only a completed trial has a final one.
    value = _finite(t.values[0]) if t.values and t.state.name == "COMPLETE" else None
    return TrialRow(
        number=t.number, state=t.state.name.lower(), value=value,
        duration=round(duration, 3) if duration is not None else None,
        epochs=int(epochs) if epochs is not None else None, params=dict(t.params), reason=reason,
        pruned_at_epoch=int(pruned_at) if pruned_at is not None else None, last_value=_finite(last),
        device=attrs.get("device"), n_params=attrs.get("n_params"), history=history,
        score=trial_score(attrs), costs={k: attrs[k] for k in COST_ATTRS if k in attrs} or None,
        folds=folds_of(history), stopped=str(stopped) if stopped else None,
    )


def sort_rows(rows: list[TrialRow], key: str = "number", direction: str = "maximize") -> list[TrialRow]:
    """Sort by ``number``, ``value`` (best first for the study's direction; trials without a value
    last) or ``duration`` (longest first)."""
    if key not in SORT_KEYS:
        raise ConfigError(f"unknown sort key {key!r} (choose from: {', '.join(SORT_KEYS)})")
    if key == "number":
        return sorted(rows, key=lambda r: r.number)
    if key == "duration":
        return sorted(rows, key=lambda r: (r.duration is None, -(r.duration or 0.0), r.number))
    sign = -1.0 if direction == "maximize" else 1.0
    return sorted(rows, key=lambda r: (r.value is None, sign * (r.value or 0.0), r.number))


def study_direction(study: Any) -> str:
    return "maximize" if study.directions[0].name == "MAXIMIZE" else "minimize"


def list_trials(study: Any, sort: str = "number") -> list[TrialRow]:
    """Every trial of the study as a TrialRow, sorted."""
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    return sort_rows(rows, sort, study_direction(study))


def trials_summary(study: Any, rows: list[TrialRow]) -> dict[str, Any]:
    """The JSON object of ``automl trials --json``: the study, its metric and direction, the trials."""
    config = study.user_attrs.get("automl") or {}
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    best = None
    with contextlib.suppress(ValueError, RuntimeError):  # no completed trial
        from automl.search.moo import pick_best, study_budget

        best = pick_best(study, study_budget(config)).number  # multi-objective: the best.pt pick
    return {
        "study": study.study_name,
        "task": config.get("task"),
        "metric": config.get("metric"),
        "direction": study_direction(study),
        "best_trial": best,
        "n_trials": len(rows),
        "states": states,
        "deadline_stopped": sum(r.stopped == "deadline" for r in rows),
        "trials": [r.to_json() for r in rows],
    }


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def trials_table(summary: dict[str, Any]) -> Any:
    """A Rich table of ``trials_summary`` output (the CLI prints it; nothing is printed here)."""
    from rich.markup import escape
    from rich.table import Table

    from automl.runtime.int8 import score_label

    metric = summary.get("metric") or "value"
    states = states_line(summary) or "no trials"
    best = f", best #{summary['best_trial']}" if summary["best_trial"] is not None else ""
    table = Table(title=f"study '{escape(summary['study'])}': {states}{best}", title_justify="left", expand=True)
    columns: list[tuple[str, dict[str, Any]]] = [
        ("#", {"justify": "right"}), ("state", {}), (metric, {"justify": "right"}), ("duration", {"justify": "right"}),
        ("epochs", {"justify": "right"}), ("params", {"overflow": "fold", "ratio": 5}),
        ("reason", {"overflow": "fold", "ratio": 2, "min_width": 12}),
    ]
    for col, kw in columns:
        table.add_column(col, **kw)
    style = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan"}
    for t in summary["trials"]:
        if t["value"] is not None:
            value = f"{t['value']:.4f}"
            label = score_label(t.get("score"))  # --score: the value is the quantized model's
            if label:
                value += f" [dim]({label})[/]"
        elif t["last_value"] is not None:
            value = f"[dim]({t['last_value']:.4f})[/]"  # where a pruned trial stood when stopped
        else:
            value = ""
        epochs = "" if t["epochs"] is None else str(t["epochs"])
        if t.get("folds", 0) and t["folds"] > 1 and epochs:
            epochs += f" ({t['folds']} folds)"
        if t["pruned_at_epoch"] is not None:
            epochs = f"{epochs} [yellow](stopped)[/]" if epochs else f"stopped at {t['pruned_at_epoch']}"
        state, label = t["state"], state_label(t["state"], t.get("stopped"))
        table.add_row(
            str(t["number"]), f"[{style[state]}]{label}[/]" if state in style else label, value,
            "" if t["duration"] is None else f"{t['duration']:.1f} s", epochs,
            escape(", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())), escape(t["reason"] or ""),
        )
    return table


# --- the Pareto front (``automl trials --pareto``) -------------------------------------------------

def pareto_summary(study: Any) -> dict[str, Any]:
    """The JSON object of ``automl trials --pareto --json``: ``trials_summary`` of the study's Pareto
    front (Optuna's ``study.best_trials``, most accurate first), each trial with ``objectives`` (name ->
    value) and its measured ``costs``; plus ``objectives``, ``directions`` and ``front_size``. A
    single-objective study's front is its best trial."""
    from automl.search.moo import COST_ATTRS, pareto_front, study_budget, study_objectives

    config = study.user_attrs.get("automl") or {}
    objectives = list(study_objectives(study) or (config.get("metric") or "value",))
    front = pareto_front(study)
    summary = trials_summary(study, [trial_row(t) for t in front])
    for row, t in zip(summary["trials"], front, strict=True):
        row["objectives"] = {name: _finite(v) for name, v in zip(objectives, t.values, strict=True)}
        row["costs"] = {k: t.user_attrs[k] for k in COST_ATTRS if k in t.user_attrs}
    summary.update({"pareto": True, "objectives": objectives,
                    "directions": [d.name.lower() for d in study.directions], "front_size": len(front),
                    "max_latency_ms": study_budget(config)})
    return summary


#: column titles (with units) of cost objectives in the Pareto table
OBJECTIVE_COLUMNS = {"latency": "latency ms", "size": "ONNX bytes", "params": "weights"}


def pareto_table(summary: dict[str, Any]) -> Any:
    """A Rich table of ``pareto_summary`` output: one row per front member, its objectives and figures."""
    from rich.markup import escape
    from rich.table import Table

    objectives = summary["objectives"]
    goals = ", ".join(f"{o} ({d[:3]})" for o, d in zip(objectives, summary["directions"], strict=True))
    table = Table(title=f"study '{escape(summary['study'])}': Pareto front of {summary['front_size']} trials "
                        f"({goals})", title_justify="left", expand=True)
    table.add_column("#", justify="right")
    for name in objectives:
        table.add_column(OBJECTIVE_COLUMNS.get(name, name), justify="right")
    figures = [(o, col, key) for o, col, key in (("latency", "latency ms", "latency_ms"), ("size", "ONNX bytes",
               "onnx_bytes"), ("params", "weights", "params")) if o not in objectives]  # not shown twice
    for _, col, _ in figures:
        table.add_column(col, justify="right")
    table.add_column("params", overflow="fold", ratio=5)
    for t in summary["trials"]:
        costs = t.get("costs") or {}
        table.add_row(
            str(t["number"]), *(_short(t["objectives"].get(o)) for o in objectives),
            *(_short(costs.get(key, "")) for _, _, key in figures),
            escape(", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())),
        )
    return table
