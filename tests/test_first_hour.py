"""What a new user met in the first hour (issue 24, items 3, 6, 7, 8): counts and units that agree,
per-trial costs in ``automl trials --json``, image inputs resized with a note, paths that stay on one
line when piped, parameters shown at their own scale, and no reference model named where none exists."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli

LONG = "/tmp/" + "a-rather-long-folder-name/" * 4 + "best.pt"  # well over 80 columns with its label


def _study(trials: list[optuna.trial.FrozenTrial], **attrs: Any) -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="s")
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for t in trials:
        study.add_trial(t)
    return study


def _trial(value: float | None, params: dict[str, Any], attrs: dict[str, Any],
           state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    dists = {k: optuna.distributions.FloatDistribution(1e-7, 1.0, log=True) if isinstance(v, float)
             else optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()}
    return optuna.trial.create_trial(value=value, params=params, distributions=dists, user_attrs=attrs, state=state)


def test_summary_counts_add_up_with_a_waiting_trial() -> None:
    """``trials 5 (3 complete, 1 pruned, 0 failed)`` had one trial unaccounted for (a queued first)."""
    from automl.ui.search import counts_text

    c = {"total": 5, "complete": 3, "pruned": 1, "failed": 0, "running": 0}
    assert counts_text(c) == "5 (3 complete, 1 pruned, 0 failed, 1 waiting)"
    assert counts_text({**c, "total": 4}) == "4 (3 complete, 1 pruned, 0 failed)"
    assert counts_text({**c, "total": 6, "running": 1}) == "6 (3 complete, 1 pruned, 0 failed, 1 running, 1 waiting)"


def test_cross_validated_epochs_say_over_how_many_folds() -> None:
    """A trial line said ``45 epochs`` while its reason said ``reached after 5 epochs`` (of one fold)."""
    from automl.study.trials import epochs_text, trial_row
    from automl.ui.plain import PlainSearchObserver

    history = [{"val_metric": 0.5, "train_loss": 1.0, "fold": f} for f in range(1, 6) for _ in range(9)]
    t = _trial(None, {"lr": 0.01}, {"epochs": 45, "history": history,
                                   "prune_reason": "deadline: --timeout reached after 5 epochs"},
               optuna.trial.TrialState.PRUNED)
    row = trial_row(_study([t]).trials[0])
    assert row.folds == 5 and row.to_json()["folds"] == 5
    assert epochs_text(45, 5) == "45 epochs over 5 folds" and epochs_text(1) == "1 epoch"
    stream = io.StringIO()
    PlainSearchObserver(total=None, stream=stream).on_trial_end(_study([t]).trials[0])
    assert "45 epochs over 5 folds" in stream.getvalue()
    assert "folds" not in trial_row(_study([_trial(0.5, {"lr": 0.01}, {"epochs": 3})]).trials[0]).to_json()


def test_trials_json_lists_each_trials_measured_costs(tmp_path: Path) -> None:
    """A latency-budget study records latency, MACs, ONNX bytes per trial: ``trials --json`` shows them."""
    url = f"sqlite:///{tmp_path / 'automl.db'}"
    study = optuna.create_study(direction="maximize", study_name="s", storage=url)
    attrs = {"latency_ms": 0.042, "macs": 123456, "onnx_bytes": 9876, "params": 3210, "epochs": 2}
    study.add_trial(_trial(0.9, {"lr": 0.01}, attrs))
    study.add_trial(_trial(0.8, {"lr": 0.02}, {"epochs": 2}))
    res = CliRunner().invoke(cli.app, ["trials", "--storage", url, "--study", "s", "--json"])
    assert res.exit_code == 0, res.output
    trials = json.loads(res.stdout)["trials"]
    assert trials[0]["costs"] == {"latency_ms": 0.042, "onnx_bytes": 9876, "macs": 123456, "params": 3210}
    assert "costs" not in trials[1]  # a trial that measured nothing carries no empty object


def test_pareto_latency_column_has_its_unit_and_compress_front_its_size() -> None:
    from automl.ui.compress import print_search_table
    from automl.ui.trials import pareto_table

    summary = {"study": "s", "objectives": ["accuracy", "latency"], "directions": ["maximize", "minimize"],
               "front_size": 1, "trials": [{"number": 0, "objectives": {"accuracy": 0.9, "latency": 0.5},
                                            "costs": {"onnx_bytes": 100, "params": 10}, "params": {}}]}
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(pareto_table(summary))
    header = next(ln for ln in console.export_text().splitlines() if "ONNX bytes" in ln)
    assert "latency ms" in header  # the objective column, in its unit
    row = {"trial": 1, "recipe": {"prune_ratio": 0}, "variant": "int8", "val_accuracy": 0.9, "test_accuracy": 0.9,
           "latency_b1_ms": 0.1, "latency_b64_ms": 1.0, "size_bytes": 1000, "recommended": True}
    report = {"metric": "accuracy", "n_trials": 4, "study": "c", "front": [row, {**row, "trial": 2,
                                                                               "recommended": False}],
              "baseline": {"val_accuracy": 0.9, "test_accuracy": 0.9}, "notes": [], "report_path": LONG,
              "recommended": LONG, "recommendation": "fastest"}
    console = Console(width=80, record=True, file=io.StringIO())
    print_search_table(report, console)
    text = console.export_text()
    assert "Pareto front: 2 of 4 trials" in text
    assert sum(LONG in ln for ln in text.splitlines()) == 2  # report and recommended: each path on one line


def test_report_shows_small_parameters_and_names_no_missing_reference() -> None:
    from automl.report import _leaderboard_html, _summary_html

    t = _trial(0.9, {"weight_decay": 6e-06, "lr": 0.003}, {"epochs": 2})
    board = {"metric": "accuracy", "direction": "maximize",
             "rows": [{"kind": "family", "name": "cnn", "complete": 1, "trials": 1, "best_trial": 0, "val": 0.9,
                       "test": 0.9}]}
    study = _study([t], automl={"task": "image", "metric": "accuracy"}, leaderboard=board)
    html = _summary_html(study)
    assert "weight_decay=6e-06" in html and "0.0000" not in html.split("<h2")[1 if "<h2" in html else 0]
    assert "reference" not in _leaderboard_html(study, {"metric": "accuracy"})
    with_ref = {**board, "rows": [*board["rows"], {"kind": "reference", "model": "logistic regression",
                                                   "val": 0.8, "test": 0.8}]}
    study.set_user_attr("leaderboard", with_ref)
    assert "classic reference" in _leaderboard_html(study, {"metric": "accuracy"})


def test_image_predict_says_once_that_it_resized(tmp_path: Path) -> None:
    """A 32x32 and a 64x64 PNG given to an 8x8 digits model: one note, and each row says its size."""
    from PIL import Image

    from tests._onnx_helpers import digit_pngs, export_checkpoint, tiny_digits_checkpoint

    onnx_path = export_checkpoint(tiny_digits_checkpoint(tmp_path / "d.pt", steps=5), tmp_path / "d.onnx")
    (same,) = digit_pngs(tmp_path / "png", [3])
    big = []
    for side in (32, 64):
        big.append(tmp_path / f"big{side}.png")
        Image.open(same).resize((side, side)).save(big[-1])
    res = CliRunner().invoke(cli.app, ["predict", str(onnx_path), str(same), *map(str, big), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [p.get("resized_from") for p in out["predictions"]] == [None, [32, 32], [64, 64]]
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "2 image(s) resized to 8x8" in notes[0] and "32x32, 64x64" in notes[0], notes
    assert out["notes"] == [notes[0].removeprefix("note: ")]


def test_tabular_pruning_of_periodic_embeddings_warns_nothing(tmp_path: Path) -> None:
    """Torch-Pruning's ``UserWarning: Unwrapped parameters detected`` reached the user's terminal."""
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.tasks import DataConfig, get_task
    from compress.prune import prune_model
    from tests._onnx_helpers import task_checkpoint
    from tests.tasks.test_tabular import make_tabular_csv

    csv = make_tabular_csv(tmp_path / "t.csv", n=120)
    ckpt = load_checkpoint(task_checkpoint("tabular", str(csv), tmp_path / "b.pt",
                                           {"model": "mlp", "num_embedding": "plr"}))
    task = get_task("tabular")
    example = task.example_input(task.load_data(DataConfig(source=str(csv))).meta, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = prune_model(model_from_checkpoint(ckpt).eval(), ckpt["arch"], example, 0.3)
    assert out.skipped is None and out.params_after < out.params_before
    assert not [w for w in caught if "Unwrapped parameters" in str(w.message)]


def test_text_model_answers_a_number_with_expected_a_string() -> None:
    from automl.data.text import fit_text_spec
    from automl.exceptions import InputError
    from automl.serve.http import http_status
    from automl.tasks import get_task

    spec = {**fit_text_spec(["good film", "bad film"], max_len=11), "kind": "text"}
    with pytest.raises(InputError, match=r"sample 0: expected a string .*got int") as info:
        get_task("text").encode_json([42], spec, {}, None)
    assert http_status(info.value) == 422
    assert get_task("text").encode_json([[1] * 11], spec, {}, None) is None  # token ids: the shape checks
