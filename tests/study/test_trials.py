"""`automl trials`: every trial with its fields, pruned ones with their epoch; sorting; bad input.

``make_study`` builds a small synthetic study (no training) shaped like what the search records;
test_report.py and test_dashboard.py reuse it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import cli

PRUNED_AT = 2
CLASSES = ["cat", "dog", "owl"]
# best_test of the synthetic study: 3 classes, 8 test samples
Y_TRUE = [0, 0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 2, 2, 2]


def _history(curve: list[float]) -> list[dict[str, float]]:
    return [
        {"epoch": i + 1, "train_loss": round(2.0 / (i + 1), 6), "val_loss": round(2.2 / (i + 1), 6),
         "val_metric": v, "seconds": 0.1 * (i + 1)}
        for i, v in enumerate(curve)
    ]


def make_study(
    path: Path, name: str = "synth", direction: str = "maximize", regression: bool = False, n_complete: int = 3,
) -> dict[str, Any]:
    """A SQLite study at ``path/automl.db``: ``n_complete`` complete trials (4 epochs each), one pruned
    after epoch 2, one failed; ``automl`` and ``best_test`` user attrs as the search writes them."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(path / 'automl.db').resolve()}"
    study = optuna.create_study(storage=url, study_name=name, direction=direction)
    metric = "rmse" if regression else "accuracy"
    study.set_user_attr("automl", {"task": "tabular" if regression else "image", "data": {"source": "synthetic"},
                                   "epochs": 4, "metric": metric, "direction": direction})
    dists = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "width": IntDistribution(8, 64),
             "optimizer": CategoricalDistribution(["adamw", "sgd"])}
    curves = [[0.5, 0.6, 0.7, 0.8], [0.3, 0.4, 0.45, 0.5], [0.6, 0.75, 0.85, 0.9]][:n_complete]
    values: dict[int, float] = {}

    def ask(i: int) -> Any:
        return study.ask({"lr": dists["lr"], "width": dists["width"], "optimizer": dists["optimizer"]})

    for i, curve in enumerate(curves):
        t = ask(i)
        for step, v in enumerate(curve, start=1):
            t.report(v, step)
        for k, v in {"epochs": len(curve), "seconds": 0.4, "device": "cpu", "n_params": 1000 + i,
                     "history": _history(curve)}.items():
            t.set_user_attr(k, v)
        study.tell(t, curve[-1])
        values[t.number] = curve[-1]
    t = ask(len(curves))  # stopped by the trial pruner after epoch 2
    pruned_curve = [0.1, 0.15]
    for step, v in enumerate(pruned_curve, start=1):
        t.report(v, step)
    for k, v in {"epochs": PRUNED_AT, "seconds": 0.2, "device": "cpu", "n_params": 999,
                 "history": _history(pruned_curve), "pruned_at_epoch": PRUNED_AT,
                 "prune_reason": f"trial pruner stopped it after epoch {PRUNED_AT} (val {metric} 0.1500)"}.items():
        t.set_user_attr(k, v)
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    pruned = t.number
    t = ask(len(curves) + 1)
    t.set_user_attr("fail_reason", "out of memory on cuda (batch_size=512)")
    t.set_user_attr("epochs", 0)
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    failed = t.number
    best = max(values, key=values.get) if direction == "maximize" else min(values, key=values.get)
    if regression:
        best_test = {"trial": best, "metric": metric, "value": 0.5, "y_true": [1.0, 2.0, 3.0, 4.0],
                     "y_pred": [1.1, 1.9, 3.2, 3.7], "classes": []}
    else:
        best_test = {"trial": best, "metric": metric, "value": 0.75, "y_true": Y_TRUE, "y_pred": Y_PRED,
                     "classes": CLASSES}
    study.set_user_attr("best_test", best_test)
    return {"storage_url": url, "study": name, "out": str(path), "values": values, "best": best,
            "pruned": pruned, "failed": failed, "n_trials": len(curves) + 2}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_study(tmp_path_factory.mktemp("synth"))


def invoke(*args: str) -> Any:
    """Run the CLI in-process (a wide terminal, so tables do not wrap); returns click's Result."""
    return CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "200"})


def assert_one_line_error(result: Any, *fragments: str) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:"), err
    for f in fragments:
        assert f in err, (f, err)
    return err


def test_trials_json_lists_every_trial_with_its_fields(synth: dict[str, Any]) -> None:
    r = invoke("trials", "--storage", synth["storage_url"], "--study", "synth", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)  # exactly one JSON object on stdout
    assert out["study"] == "synth" and out["metric"] == "accuracy" and out["direction"] == "maximize"
    assert out["best_trial"] == synth["best"] and out["n_trials"] == synth["n_trials"]
    assert out["states"] == {"complete": 3, "pruned": 1, "fail": 1}
    rows = {t["number"]: t for t in out["trials"]}
    assert sorted(rows) == list(range(synth["n_trials"]))
    for t in rows.values():
        assert {"number", "state", "value", "duration", "epochs", "params", "reason", "pruned_at_epoch"} <= set(t)
        assert set(t["params"]) == {"lr", "width", "optimizer"}
        assert t["duration"] is not None and t["duration"] >= 0
    for n, v in synth["values"].items():
        assert rows[n]["state"] == "complete" and rows[n]["value"] == pytest.approx(v)
        assert rows[n]["epochs"] == 4 and rows[n]["reason"] is None and rows[n]["pruned_at_epoch"] is None
    p = rows[synth["pruned"]]
    assert p["state"] == "pruned" and p["value"] is None
    assert p["pruned_at_epoch"] == PRUNED_AT and p["epochs"] == PRUNED_AT
    assert p["last_value"] == pytest.approx(0.15) and "after epoch 2" in p["reason"]
    f = rows[synth["failed"]]
    assert f["state"] == "fail" and f["value"] is None and "out of memory" in f["reason"]


def test_trials_sort_and_state_filter(synth: dict[str, Any]) -> None:
    r = invoke("trials", "--storage", synth["storage_url"], "--sort", "value", "--json")  # the only study
    numbers = [t["number"] for t in json.loads(r.stdout)["trials"]]
    by_value = sorted(synth["values"], key=lambda n: -synth["values"][n])
    assert numbers[:3] == by_value and set(numbers[3:]) == {synth["pruned"], synth["failed"]}
    r = invoke("trials", "--storage", synth["storage_url"], "--state", "pruned", "--json")
    assert [t["number"] for t in json.loads(r.stdout)["trials"]] == [synth["pruned"]]


def test_sort_rows_follows_the_direction() -> None:
    from automl.study.trials import TrialRow, sort_rows

    rows = [TrialRow(0, "complete", 0.5, 3.0, 4, {}), TrialRow(1, "complete", 0.2, 9.0, 4, {}),
            TrialRow(2, "pruned", None, 1.0, 2, {}), TrialRow(3, "complete", 0.9, None, 4, {})]
    assert [r.number for r in sort_rows(rows, "value", "maximize")] == [3, 0, 1, 2]
    assert [r.number for r in sort_rows(rows, "value", "minimize")] == [1, 0, 3, 2]
    assert [r.number for r in sort_rows(rows, "duration")] == [1, 0, 2, 3]
    assert [r.number for r in sort_rows(rows[::-1], "number")] == [0, 1, 2, 3]


def test_trials_table_shows_states_and_reasons(synth: dict[str, Any]) -> None:
    r = invoke("trials", "--storage", synth["storage_url"], "--study", "synth")
    assert r.exit_code == 0, r.stderr
    text = r.stdout
    for word in ("complete", "pruned", "fail", "stopped", "out of memory", "0.9000", "(0.1500)", "lr="):
        assert word in text, word


def test_trials_on_the_digits_study(digits_run: dict[str, Any]) -> None:
    r = invoke("trials", "--storage", digits_run["storage_url"], "--study", digits_run["study"], "--json",
               "--sort", "value")
    out = json.loads(r.stdout)
    assert out["n_trials"] == digits_run["n_trials"] == len(out["trials"])
    best = out["trials"][0]
    assert best["number"] == digits_run["best_trial"]
    assert best["value"] == pytest.approx(digits_run["best_value"])
    assert best["params"] == {k: v for k, v in digits_run["params"].items() if k in best["params"]}
    for t in out["trials"]:
        assert t["state"] == "complete" and t["epochs"] == 4 and t["device"] == "cpu" and t["n_params"] > 0
        assert t["duration"] > 0 and math.isfinite(t["value"])


# --- bad input: one line on stderr, exit code 1 ---------------------------------------------------


def test_unknown_study_lists_the_known_ones(synth: dict[str, Any]) -> None:
    r = invoke("trials", "--storage", synth["storage_url"], "--study", "nope", "--json")
    assert_one_line_error(r, "no study 'nope'", "known: synth")


def test_storage_with_no_studies(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(url)  # creates the tables, no study
    assert_one_line_error(invoke("trials", "--storage", url), "holds no studies")


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "missing.db"
    assert_one_line_error(invoke("trials", "--storage", f"sqlite:///{db}"), "no study database", str(db))
    assert_one_line_error(invoke("trials", "--out-dir", str(tmp_path / "runs")), "no study database", "--storage")
    assert not db.parent.exists() and not (tmp_path / "runs").exists()


def test_several_studies_need_a_name(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("a", "b"):
        optuna.create_study(storage=url, study_name=name)
    assert_one_line_error(invoke("trials", "--storage", url), "--study", "a, b")


def test_bad_sort_and_state(synth: dict[str, Any]) -> None:
    assert_one_line_error(invoke("trials", "--storage", synth["storage_url"], "--sort", "speed"), "value")
    assert_one_line_error(invoke("trials", "--storage", synth["storage_url"], "--state", "done"), "pruned")


def test_installed_command_exits_1_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    automl = Path(sys.executable).with_name("automl")
    proc = subprocess.run([str(automl), "trials", "--storage", str(tmp_path / "none.db"), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: no study database at {tmp_path / 'none.db'}"]
