"""`automl report`: one self-contained HTML file holding every plot with the study's data; bad input.

The plot data is read back from the HTML itself (the arguments of each ``Plotly.newPlot`` call), so
these tests check what a browser will draw. test_report_browser.py checks that it does draw.
"""

from __future__ import annotations

import json
import math
import re
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.study.test_trials import CLASSES, PRUNED_AT, assert_one_line_error, invoke, make_study

OPTUNA_TITLES = {
    "optimization_history": "Optimization History Plot",
    "param_importances": "Hyperparameter Importances",
    "parallel_coordinate": "Parallel Coordinate Plot",
    "slice": "Slice Plot",
    "intermediate_values": "Intermediate Values Plot",
}


def plots(html: str) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """div id -> (data, layout) of every ``Plotly.newPlot`` call in the page."""
    decoder = json.JSONDecoder()
    out = {}
    for m in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', html):
        data, end = decoder.raw_decode(html, m.end())
        layout, _ = decoder.raw_decode(html, html.index("{", end))
        out[m.group(1)] = (data, layout)
    return out


def title(layout: dict[str, Any]) -> str:
    t = layout.get("title") or {}
    return t.get("text", "") if isinstance(t, dict) else str(t)


def write(study: dict[str, Any], out: Path, *extra: str) -> tuple[dict[str, Any], str]:
    r = invoke("report", "--storage", study["storage_url"], "--study", study["study"], "--out", str(out), "--json",
               *extra)
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.stdout)  # exactly one JSON object on stdout
    return info, Path(info["report"]).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def synth_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], str]:
    tmp = tmp_path_factory.mktemp("synth_report")
    study = make_study(tmp / "study")
    info, html = write(study, tmp / "out" / "report.html")
    return study, info, html


def test_report_on_digits_holds_every_plot_with_the_trials(digits_run: dict[str, Any], tmp_path: Path) -> None:
    import optuna

    from automl.report import SECTIONS

    info, html = write(digits_run, tmp_path / "digits.html")
    assert info["figures"] == [k for k in SECTIONS if k not in ("predictions", "scores")] and info["skipped"] == {}
    assert info["bytes"] == len(html.encode()) > 3_000_000  # plotly.js is inside
    from plotly.offline import get_plotlyjs

    page = html.replace(get_plotlyjs(), "")  # plotly.js is inlined whole; nothing else is fetched
    assert len(page) < len(html) - 3_000_000
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    for key in info["figures"]:
        assert f"<h2>{SECTIONS[key]}" in html, key
    figs = plots(html)
    for key, t in OPTUNA_TITLES.items():
        assert title(figs[f"fig-{key}"][1]).startswith(t), key

    study = optuna.load_study(study_name=digits_run["study"], storage=digits_run["storage_url"])
    trials = study.trials
    # optimisation history: one point per completed trial, at its value
    data, _ = figs["fig-optimization_history"]
    points = dict(zip(data[0]["x"], data[0]["y"], strict=True))
    assert points == pytest.approx({t.number: t.value for t in trials})
    # intermediate values: one line per trial with every epoch's val accuracy
    data, _ = figs["fig-intermediate_values"]
    lines = {d["name"]: d["y"] for d in data}
    for t in trials:
        steps = sorted(t.intermediate_values)
        assert lines[f"Trial{t.number}"] == pytest.approx([t.intermediate_values[s] for s in steps])
    # parallel coordinates and slices name every sampled parameter
    params = {p for t in trials for p in t.params}
    data, layout = figs["fig-parallel_coordinate"]  # Optuna 5 draws it with one line per trial
    assert set(layout["xaxis"]["ticktext"]) == params | {"accuracy"}
    lines = [d for d in data if d.get("customdata")]
    assert sorted(float(d["customdata"][0][1]) for d in lines) == pytest.approx(
        sorted(t.value for t in trials), rel=5e-3)
    slice_axes = {v["title"]["text"] for fid, (_, lay) in figs.items() if fid.startswith("fig-slice")
                  for k, v in lay.items() if k.startswith("xaxis") and "title" in v}
    assert slice_axes == params
    importance = figs["fig-param_importances"][0][0]
    # Optuna rates the parameters every completed trial has (a conditional one such as momentum,
    # sampled only with SGD, is left out when some trial lacks it)
    common = set.intersection(*(set(t.params) for t in trials if t.state == optuna.trial.TrialState.COMPLETE))
    assert set(importance["y"]) == common and math.fsum(importance["x"]) == pytest.approx(1.0, abs=0.02)
    # the best trial's curves are its recorded history
    best = study.best_trial
    assert best.number == digits_run["best_trial"]
    data, layout = figs["fig-training_curves"]
    assert title(layout) == f"Training curves of trial {best.number}"
    curves = {d["name"]: d["y"] for d in data}
    history = best.user_attrs["history"]
    assert curves["train loss"] == pytest.approx([r["train_loss"] for r in history])
    assert curves["val loss"] == pytest.approx([r["val_loss"] for r in history])
    assert curves["val accuracy"] == pytest.approx([r["val_metric"] for r in history])
    # confusion matrix and per-class metrics of the best model's test predictions
    bt = study.user_attrs["best_test"]
    (cm,), layout = figs["fig-confusion_matrix"]
    assert title(layout) == "Confusion matrix"
    assert sum(map(sum, cm["z"])) == len(bt["y_true"])
    assert sum(cm["z"][k][k] for k in range(len(cm["z"]))) / len(bt["y_true"]) == pytest.approx(bt["value"], abs=1e-6)
    bars, layout = figs["fig-per_class"]
    assert title(layout) == "Per-class precision, recall and F1"
    assert [b["name"] for b in bars] == ["precision", "recall", "f1"] and len(bars[0]["y"]) == len(bt["classes"])


def test_synthetic_report_marks_pruned_trials_and_metrics(synth_report: tuple) -> None:
    study, info, html = synth_report
    figs = plots(html)
    data, _ = figs["fig-intermediate_values"]
    (marker,) = [d for d in data if d["name"] == "pruned here"]
    assert marker["x"] == [PRUNED_AT] and marker["y"] == pytest.approx([0.15])
    assert "after epoch 2" in marker["text"][0]
    assert "1 of 4 trials were stopped by the trial pruner" in html
    (cm,), _ = figs["fig-confusion_matrix"]
    assert cm["x"] == CLASSES and cm["y"] == CLASSES
    assert cm["z"] == [[2, 1, 0], [0, 2, 1], [0, 0, 2]]
    bars, _ = figs["fig-per_class"]
    prec, rec, f1 = (b["y"] for b in bars)
    assert prec == pytest.approx([1.0, 2 / 3, 2 / 3]) and rec == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert f1 == pytest.approx([0.8, 2 / 3, 0.8])
    assert "accuracy 0.7500 on 8 test samples" in html
    # the trials table: the pruned trial with the epoch it was stopped at, the failed one with its reason
    assert "2 (stopped at 2)" in html and "out of memory on cuda" in html


def test_per_class_metrics_by_hand() -> None:
    from automl.report import confusion_matrix, per_class_metrics

    y_true = [0, 1, 2, 2, 1, 0, 3, 3, 3, 1]
    y_pred = [0, 2, 2, 2, 1, 1, 3, 0, 3, 1]  # class 4 never occurs: its metrics are 0, not NaN
    assert confusion_matrix(y_true, y_pred, 5) == [
        [1, 1, 0, 0, 0], [0, 2, 1, 0, 0], [0, 0, 2, 0, 0], [1, 0, 0, 2, 0], [0, 0, 0, 0, 0]]
    got = per_class_metrics(y_true, y_pred, 5)
    # class 0: 1 of 2 predicted right, 1 of 2 found; class 1: 2 of 3 both ways; class 2: 2 of 3
    # predicted, 2 of 2 found; class 3: 2 of 2 predicted, 2 of 3 found
    assert [g["precision"] for g in got] == pytest.approx([0.5, 2 / 3, 2 / 3, 1.0, 0.0])
    assert [g["recall"] for g in got] == pytest.approx([0.5, 2 / 3, 1.0, 2 / 3, 0.0])
    assert [g["f1"] for g in got] == pytest.approx([0.5, 2 / 3, 0.8, 0.8, 0.0])
    assert [g["support"] for g in got] == [2, 3, 2, 3, 0]


def test_regression_and_thin_studies_say_what_is_missing(tmp_path: Path) -> None:
    study = make_study(tmp_path / "reg", name="reg", direction="minimize", regression=True, n_complete=1)
    info, html = write(study, tmp_path / "reg.html")
    assert "predictions" in info["figures"] and "confusion_matrix" not in info["figures"]
    assert info["skipped"]["confusion_matrix"] == "classification only"
    assert "needs 2 completed trial(s)" in info["skipped"]["param_importances"]
    (scatter, diag), layout = plots(html)["fig-predictions"]
    assert scatter["x"] == [1.0, 2.0, 3.0, 4.0] and scatter["y"] == pytest.approx([1.1, 1.9, 3.2, 3.7])
    assert title(layout) == "Predicted vs true"


def test_default_path_and_folder_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_study(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    r = invoke("report", "--json")  # default storage runs/automl.db, its only study
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["report"] == str(Path("runs") / "synth" / "report.html")
    assert (tmp_path / "runs" / "synth" / "report.html").stat().st_size > 3_000_000
    (tmp_path / "reports").mkdir()
    r = invoke("report", "--out", "reports")  # a folder: report.html inside it
    assert "report: reports/report.html" in r.stdout and (tmp_path / "reports" / "report.html").is_file()
    assert (tmp_path / "reports" / "report.html").resolve().as_uri() in r.stdout


def test_search_summary_prints_the_report_command(tmp_path: Path) -> None:
    from rich.console import Console

    from automl.report import report_command
    from automl.ui.search import print_search_summary

    out = tmp_path / "myruns"
    url = f"sqlite:///{(out / 'automl.db').resolve()}"
    result = SimpleNamespace(
        study="image-digits", storage=url, metric="accuracy", best_trial=1, best_value=0.9, test_metric=0.8,
        params={"lr": 0.01}, device="cpu", seconds=3.0, best_pt=str(out / "image-digits" / "best.pt"),
        counts={"total": 2, "complete": 2, "pruned": 0, "failed": 0},
    )
    buf = StringIO()
    print_search_summary(result, Console(file=buf, width=200))
    assert f"report: automl report --study image-digits --out-dir {out}" in buf.getvalue()
    assert report_command("s", f"sqlite:///{Path('runs/automl.db').resolve()}", "runs") == "automl report --study s"
    assert report_command("s", "postgresql://u:secret@db/x", "runs") == (
        "automl report --study s --storage 'postgresql://u:***@db/x'"
    )


# --- bad input: one line on stderr, exit code 1 ---------------------------------------------------


def test_unwritable_output_path(synth_report: tuple, tmp_path: Path) -> None:
    study, _, _ = synth_report
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = invoke("report", "--storage", study["storage_url"], "--out", str(blocker / "sub" / "r.html"))
    assert_one_line_error(r, "cannot write the report", f"{blocker} is a file, not a folder")
    r = invoke("report", "--storage", study["storage_url"], "--out", "/proc/r.html")
    assert_one_line_error(r, "cannot write the report to /proc/r.html")


def test_unknown_study_and_empty_storage(synth_report: tuple, tmp_path: Path) -> None:
    import optuna

    study, _, _ = synth_report
    r = invoke("report", "--storage", study["storage_url"], "--study", "digits", "--out", str(tmp_path / "x.html"))
    assert_one_line_error(r, "no study 'digits'", "known: synth")
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(url)
    assert_one_line_error(invoke("report", "--storage", url), "holds no studies")
    assert not (tmp_path / "x.html").exists()


def test_trials_that_all_score_the_same_get_a_note_not_an_importance_crash() -> None:
    """fANOVA raises "zero total variance" when every completed trial has the same value (two default
    tree trials on wine's 27 validation rows both score 1.0); the report says so instead."""
    import optuna

    from automl.report._sections import _optuna_sections

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: 1.0 + 0 * t.suggest_float("lr", 0.01, 0.1), n_trials=3)
    (section,) = [s for s in _optuna_sections(study) if s.key == "param_importances"]
    assert section.note.startswith("every completed trial has the same value") and not section.figures
    study.optimize(lambda t: t.suggest_float("lr", 0.01, 0.1), n_trials=2)  # now they differ: the plot is drawn
    (section,) = [s for s in _optuna_sections(study) if s.key == "param_importances"]
    assert section.figures and not section.note
