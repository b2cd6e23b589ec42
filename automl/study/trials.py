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
TRIAL_STATES = ("complete", "pruned", "fail", "running", "waiting")  # what --state accepts
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


def list_trials(study: Any, sort: str = "number", state: str | None = None) -> list[TrialRow]:
    """Every trial of the study (only those in ``state``, when given) as a TrialRow, sorted."""
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    if state is not None:
        rows = [r for r in rows if r.state == state]
    return sort_rows(rows, sort, study_direction(study))


def check_trial_filters(sort: str, state: str | None) -> None:
    """``--sort`` and ``--state`` of ``automl trials``, checked before the storage is opened."""
    if sort not in SORT_KEYS:
        raise ConfigError(f"unknown --sort {sort!r} (choose from: {', '.join(SORT_KEYS)})")
    if state is not None and state not in TRIAL_STATES:
        raise ConfigError(f"unknown --state {state!r} (choose from: {', '.join(TRIAL_STATES)})")


def study_trials(storage: str | None, study: str | None, out_dir: str | Path = DEFAULT_OUT_DIR,
                 sort: str = "number", state: str | None = None) -> dict[str, Any]:
    """``automl trials``: the ``trials_summary`` of a study's trials, sorted by ``sort`` and only
    those in ``state`` when given (both checked before the storage is opened)."""
    check_trial_filters(sort, state)
    loaded = load_study(storage, study, out_dir)
    return trials_summary(loaded, list_trials(loaded, sort, state))


def trials_summary(study: Any, rows: list[TrialRow]) -> dict[str, Any]:
    """The JSON object of ``automl trials --json``: the study, its metric and direction, the trials."""
    config = study.user_attrs.get("automl") or {}
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    best = None
    with contextlib.suppress(ValueError, RuntimeError):  # no completed trial
        from automl.runtime.latency import stored_max_latency_ms
        from automl.search.moo import pick_best

        best = pick_best(study, stored_max_latency_ms(config)).number  # multi-objective: the best.pt pick
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


# --- the Pareto front (``automl trials --pareto``) -------------------------------------------------

def pareto_summary(study: Any) -> dict[str, Any]:
    """The JSON object of ``automl trials --pareto --json``: ``trials_summary`` of the study's Pareto
    front (Optuna's ``study.best_trials``, most accurate first), each trial with ``objectives`` (name ->
    value) and its measured ``costs``; plus ``objectives``, ``directions`` and ``front_size``. A
    single-objective study's front is its best trial."""
    from automl.runtime.latency import stored_max_latency_ms
    from automl.search.moo import COST_ATTRS, pareto_front, study_objectives

    config = study.user_attrs.get("automl") or {}
    objectives = list(study_objectives(study) or (config.get("metric") or "value",))
    front = pareto_front(study)
    summary = trials_summary(study, [trial_row(t) for t in front])
    for row, t in zip(summary["trials"], front, strict=True):
        row["objectives"] = {name: _finite(v) for name, v in zip(objectives, t.values, strict=True)}
        row["costs"] = {k: t.user_attrs[k] for k in COST_ATTRS if k in t.user_attrs}
    summary.update({"pareto": True, "objectives": objectives,
                    "directions": [d.name.lower() for d in study.directions], "front_size": len(front),
                    "max_latency_ms": stored_max_latency_ms(config)})
    return summary
