"""--timeout is a deadline, and a trial it stops is a result (issue 22): the trial keeps the weights
and value of its last completed epoch, is marked ``stopped = "deadline"``, and can be best.pt; a
trial stopped before its first epoch ended has nothing to keep and is pruned. A fake clock
(tests/study/_clock.py) moves 1000 s per epoch, so the deadline falls after a known epoch whatever
the machine's speed; --timeout without --trials runs until it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from automl.exceptions import TrainingError
from automl.study import SearchSettings, run_search
from tests.study._clock import epoch_clock
from tests.study._spaces import tiny_space

TINY_SPACE = tiny_space()
STEP = 1000.0  # fake seconds per epoch
# 3.5 steps: the deadline falls during the 4th epoch's successor, i.e. a trial keeps exactly 4 epochs
# (as long as the real seconds spent stay under half a step)
FOUR_EPOCHS = 3.5 * STEP


def _settings(tmp_path: Path, **kw: Any) -> SearchSettings:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    return SearchSettings(task="image", data="digits", space=str(space), pruner="none", out=str(tmp_path / "runs"),
                          study="d", device="cpu", **kw)


def _study(tmp_path: Path, name: str = "d") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'runs' / 'automl.db'}")


def _val_of_best_pt(best_pt: Path) -> float:
    """best.pt's own validation score, computed from its weights on its stored data split."""
    import automl
    from automl.tasks import DataConfig, get_task
    from automl.train import evaluate

    ckpt = torch.load(best_pt, map_location="cpu", weights_only=True)
    task = get_task(ckpt["task"])
    bundle = task.load_data(DataConfig(**ckpt["data"]))
    _, val = evaluate(automl.load_model(best_pt), bundle.x_val, bundle.y_val, task.loss_fn(0.0), task.metric_fn())
    return float(val)


def test_search_keeps_a_deadline_stopped_trial_and_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # automl search --task image --timeout ... --epochs 300: the only trial is stopped by the deadline;
    # the command exits 0 with a best.pt from it, and says so.
    from typer.testing import CliRunner

    import cli

    clock = epoch_clock(monkeypatch, STEP)
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    res = CliRunner().invoke(cli.app, [
        "search", "--task", "image", "--data", "digits", "--space", str(space), "--epochs", "300", "--timeout",
        str(FOUR_EPOCHS), "--pruner", "none", "--out-dir", str(tmp_path / "runs"), "--study", "d", "--device", "cpu",
        "--json"])
    assert res.exit_code == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert clock.epochs == 4 and out["n_trials"] == 1 and out["n_complete"] == 1 and out["best_trial"] == 0
    (trial,) = _study(tmp_path).trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["stopped"] == "deadline"
    assert trial.user_attrs["epochs"] == 4 and len(trial.user_attrs["history"]) == 4
    # its value is its 4th epoch's, and best.pt holds that epoch's weights (not the part-trained 5th)
    assert trial.value == pytest.approx(trial.user_attrs["history"][-1]["val_metric"], abs=1e-6)
    assert _val_of_best_pt(Path(out["best_pt"])) == pytest.approx(trial.value, abs=1e-6)
    assert out["best_value"] == pytest.approx(trial.value)
    assert any("best.pt is trial 0, stopped by the --timeout deadline after epoch 4 of 300" in n
               and "no trial ran all its epochs" in n for n in out["notes"]), out["notes"]
    # automl trials shows the state and the reason
    listed = CliRunner().invoke(cli.app, ["trials", "--out-dir", str(tmp_path / "runs"), "--json"])
    listing = json.loads(listed.stdout)
    row = listing["trials"][0]
    assert row["state"] == "complete" and row["stopped"] == "deadline" and "deadline" in row["reason"]
    assert listing["deadline_stopped"] == 1
    plain = CliRunner().invoke(cli.app, ["trials", "--out-dir", str(tmp_path / "runs")])
    assert "1 complete (1 stopped by the deadline)" in plain.stdout and "complete (deadline)" in plain.stdout
    # and the HTML report's summary and trials table
    from automl.report import _summary_html

    html = _summary_html(_study(tmp_path))
    assert "1 complete (1 stopped by the deadline)" in html and "complete (deadline)" in html


def test_a_trial_stopped_before_its_first_epoch_is_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import automl.search.objective

    epoch_clock(monkeypatch, STEP)
    real_fit = automl.search.objective.fit

    def late_fit(*args: Any, **kwargs: Any) -> Any:  # the deadline passed while the model was being built
        return real_fit(*args, **{**kwargs, "deadline": 0.0})

    monkeypatch.setattr(automl.search.objective, "fit", late_fit)
    with pytest.raises(TrainingError, match="no trial of study 'd' completed"):
        run_search(_settings(tmp_path, trials=3, epochs=500, timeout=FOUR_EPOCHS))
    trials = _study(tmp_path).trials  # the loop's clock never reached the deadline: all 3 ran
    assert [t.state.name for t in trials] == ["PRUNED"] * 3
    assert all(t.user_attrs["prune_reason"] == "deadline: --timeout reached after 0 epochs" for t in trials)
    assert not any("stopped" in t.user_attrs for t in trials)


def test_a_better_deadline_stopped_text_trial_becomes_best_pt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Trial 0 runs all its epochs at a learning rate too small to learn; trial 1 learns and is stopped
    # by the deadline after 4 of its 300 epochs, ahead on validation: best.pt is trial 1's model.
    from tests.tasks.test_text import make_text_tsv

    data = make_text_tsv(tmp_path / "reviews.tsv", n=240)
    base = ("params:\n  model: {type: fixed, value: textcnn}\n  embed_dim: {type: fixed, value: 16}\n"
            "  filters: {type: fixed, value: 16}\n  optimizer: {type: fixed, value: adamw}\n"
            "  schedule: {type: fixed, value: constant}\n  batch_size: {type: fixed, value: 32}\n")
    slow, fast = tmp_path / "slow.yaml", tmp_path / "fast.yaml"
    slow.write_text(base + "  lr: {type: fixed, value: 1.0e-7}\n")
    fast.write_text(base + "  lr: {type: fixed, value: 1.0e-2}\n")

    def settings(space: Path, **kw: Any) -> SearchSettings:
        return SearchSettings(task="text", data=str(data), space=str(space), pruner="none", cv=0, device="cpu",
                              out=str(tmp_path / "runs"), study="t", **kw)

    first = run_search(settings(slow, trials=1, epochs=4))
    epoch_clock(monkeypatch, STEP)
    result = run_search(settings(fast, trials=1, epochs=300, timeout=FOUR_EPOCHS))
    done, stopped = _study(tmp_path, "t").trials
    assert stopped.user_attrs["stopped"] == "deadline" and stopped.user_attrs["epochs"] == 4
    assert stopped.value > done.value + 0.1, (stopped.value, done.value)
    assert result.best_trial == 1 and first.best_trial == 0
    best_pt = Path(result.best_pt)
    assert torch.load(best_pt, weights_only=True)["trial"] == 1
    assert _val_of_best_pt(best_pt) == pytest.approx(stopped.value, abs=1e-6)
    assert any("best.pt is trial 1" in n and "it scored best on validation" in n for n in result.notes), result.notes
    (family,) = [row for row in result.leaderboard["rows"] if row["kind"] == "family"]
    assert family["best_trial"] == 1 and family["val"] == pytest.approx(stopped.value), result.leaderboard


def test_timeout_without_trials_runs_until_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --timeout alone: trials keep starting after the 20th until the deadline (24.5 one-epoch trials fit).
    from automl.study import resolve_trials

    assert resolve_trials(None, 120.0) is None and resolve_trials(None, None) == 20 and resolve_trials(7, 120.0) == 7
    clock = epoch_clock(monkeypatch, STEP)
    space = tmp_path / "mlp.yaml"
    space.write_text("params:\n  model: {type: fixed, value: mlp}\n  depth: {type: fixed, value: 1}\n"
                     "  width: {type: fixed, value: 8}\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    settings = SearchSettings(task="tabular", data="wine", space=str(space), pruner="none", cv=0, device="cpu",
                              out=str(tmp_path / "runs"), study="w", epochs=1, trials=resolve_trials(None, 24.5 * STEP),
                              timeout=24.5 * STEP)
    result = run_search(settings)
    trials = _study(tmp_path, "w").trials
    assert len(trials) == clock.epochs == 25 and result.counts["complete"] == 25  # 20 used to be the end
    assert sum(t.number >= 20 for t in trials) == 5
    assert any("no --trials: trials ran until the --timeout" in n for n in result.notes), result.notes


def test_cv_trial_stopped_by_the_deadline_keeps_its_completed_folds(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    clock = epoch_clock(monkeypatch, STEP)
    space = tmp_path / "mlp.yaml"
    space.write_text("params:\n  model: {type: fixed, value: mlp}\n  depth: {type: fixed, value: 1}\n"
                     "  width: {type: fixed, value: 8}\n  lr: {type: fixed, value: 1.0e-2}\n")
    # 3 folds of 2 epochs: the deadline falls after fold 2's epochs, during fold 3
    result = run_search(SearchSettings(task="tabular", data="wine", space=str(space), pruner="none", cv=3,
                                       device="cpu", out=str(tmp_path / "runs"), study="c", epochs=2, trials=1,
                                       timeout=FOUR_EPOCHS))
    (trial,) = _study(tmp_path, "c").trials
    assert clock.epochs == 4 and trial.state.name == "COMPLETE" and trial.user_attrs["stopped"] == "deadline"
    assert len(trial.user_attrs["cv_scores"]) == 2 and trial.user_attrs["refit"] is False
    assert trial.value == pytest.approx(sum(trial.user_attrs["cv_scores"]) / 2, abs=1e-5)
    assert "after fold 2 of 3" in trial.user_attrs["stop_reason"] and result.best_trial == 0
    assert Path(result.best_pt).is_file()


def test_multi_objective_deadline_stopped_trial_is_on_the_front(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    epoch_clock(monkeypatch, STEP)
    result = run_search(_settings(tmp_path, trials=2, epochs=300, timeout=FOUR_EPOCHS,
                                  objectives=("accuracy", "params")))
    (trial,) = _study(tmp_path).trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["stopped"] == "deadline" and len(trial.values) == 2
    assert result.best_trial == 0 and [r["trial"] for r in result.front] == [0]
    assert _val_of_best_pt(Path(result.best_pt)) == pytest.approx(trial.values[0], abs=1e-6)
