"""``automl.study.search_command`` (the one library call of ``automl search``), the budget watch the
library holds (the display only reports), and ``automl trials``' filters in the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from automl.exceptions import ConfigError, DataError, StorageError
from automl.search.budget import BudgetObserver, BudgetWatch
from automl.study import SearchSettings, drop_new_empty_studies, search_command
from automl.study.trials import list_trials, load_study, study_trials
from tests.study.test_trials import make_study


def _failing_search(name: str) -> Any:
    """A ``run_search`` that creates its study, then fails as unreadable data does (before a trial)."""

    def run_search(settings: SearchSettings, observer: Any = None, start: float | None = None) -> Any:
        import optuna

        optuna.create_study(storage=f"sqlite:///{Path(settings.out) / 'automl.db'}", study_name=name)
        raise DataError("broken.png: not a readable image")

    return run_search


def test_a_search_that_fails_before_a_trial_leaves_no_empty_study(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from automl.study import _command

    make_study(tmp_path, name="kept")  # there before: never touched
    monkeypatch.setattr(_command, "run_search", _failing_search("new-empty"))
    settings = SearchSettings(task="tabular", data="wine", out=str(tmp_path), trials=1, epochs=1)
    with pytest.raises(DataError, match="broken.png"):
        search_command(settings)
    names = [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'automl.db'}")]
    assert names == ["kept"]


def test_a_cleanup_that_fails_is_said_on_the_error_not_swallowed(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from automl.study import _command

    def refuse(**_: Any) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(_command, "run_search", _failing_search("new-empty"))
    monkeypatch.setattr(optuna, "delete_study", refuse)
    settings = SearchSettings(task="tabular", data="wine", out=str(tmp_path), trials=1, epochs=1)
    with pytest.raises(DataError) as exc:  # the error that ended the search stays the one raised
        search_command(settings)
    (note,) = exc.value.__notes__
    assert "cannot delete the empty study 'new-empty'" in note and "database is locked" in note
    with pytest.raises(StorageError, match="cannot delete the empty study 'new-empty'"):
        drop_new_empty_studies(f"sqlite:///{tmp_path / 'automl.db'}", set())


def test_the_display_holds_no_budget_and_folds_never_change_the_epochs() -> None:
    from automl.ui.plain import PlainSearchObserver

    shown: list[str] = []

    class Display:
        def on_note(self, message: str) -> None:
            shown.append(message)

    display = PlainSearchObserver(total=3)
    assert not hasattr(display, "budget") and not hasattr(display, "set_folds")  # it reports, nothing more
    watch = BudgetWatch(trials=3, epochs=10, timeout=None)
    observer = BudgetObserver(Display(), watch)
    observer.set_folds(5)
    assert watch.epochs == 10 and watch.per_trial_epochs == 50  # --epochs as given; a trial trains 5 x 10
    observer.on_note("hello")
    assert shown == ["hello"]


def test_trials_filters_and_checks_in_the_library(tmp_path: Path) -> None:
    make_study(tmp_path)
    loaded = load_study(None, None, tmp_path)
    assert [r.state for r in list_trials(loaded, "number", "pruned")] == ["pruned"]
    summary = study_trials(None, None, tmp_path, sort="value", state="complete")
    assert summary["states"] == {"complete": 3} and [t["number"] for t in summary["trials"]] == [2, 0, 1]
    with pytest.raises(ConfigError, match="unknown --state 'done'"):  # before the storage is looked for
        study_trials(None, None, tmp_path / "nowhere", state="done")


def test_max_latency_ms_is_parsed_once_and_a_study_stored_with_the_old_key_resumes() -> None:
    from types import SimpleNamespace

    from automl.runtime.latency import LatencySpec, LatencyTarget, stored_max_latency_ms
    from automl.study._search import _resume_latency

    settings = SearchSettings(task="tabular", max_latency_ms=0.5, latency_threads=2)
    assert settings.latency == LatencySpec(max_latency_ms=0.5, target=LatencyTarget(threads=2))
    older = {"latency": {"max_ms": 0.5, "target": {"device": "cpu", "batch": 1, "threads": 2}}}
    study = SimpleNamespace(study_name="s")
    assert _resume_latency(study, older, settings.latency) == settings.latency  # same budget: no error
    assert _resume_latency(study, older, None) == settings.latency  # the command line gave none: the stored one
    with pytest.raises(ConfigError, match="latency budget 0.5 ms"):
        _resume_latency(study, older, LatencySpec(max_latency_ms=0.7, target=LatencyTarget(threads=2)))
    assert stored_max_latency_ms(older) == 0.5 and stored_max_latency_ms({"latency": "junk"}) is None


def test_the_command_line_prints_the_cleanup_note_on_the_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from automl.study import _command
    from tests.study.test_worker import error_lines, run_cli

    def refuse(**_: Any) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(_command, "run_search", _failing_search("new-empty"))
    monkeypatch.setattr(optuna, "delete_study", refuse)
    code, out, err = run_cli(["search", "--task", "tabular", "--data", "wine", "--trials", "1", "--out-dir",
                              str(tmp_path)], capsys, monkeypatch)
    (line,) = error_lines(err)
    assert code == 1 and out == ""
    assert line.startswith("error: broken.png: not a readable image; cannot delete the empty study 'new-empty'")


def test_settings_copied_through_their_dict_rebuild_the_latency_spec() -> None:
    settings = SearchSettings(task="tabular", max_latency_ms=0.5)
    copy = SearchSettings(**{**settings.__dict__, "max_latency_ms": 0.25})  # as the tests and workers copy them
    assert copy.latency is not None and copy.latency.max_latency_ms == 0.25
