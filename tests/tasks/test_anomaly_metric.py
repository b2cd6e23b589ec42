"""``--metric`` for the anomaly task: roc_auc (default), average_precision or f1 at the threshold chosen
on validation select the model; every other metric, or a labelled metric without labels, is one line.
The registry's metrics score the 1-D anomaly score with the anomaly (label 1) as the positive class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from typer.testing import CliRunner

import cli
from automl.tasks import DataConfig, get_task
from tests.tasks.test_anomaly import make_anomaly_csv

SPACE = "params:\n  model: ae\n  depth: 1\n  width: 16\n  bottleneck: 2\n  lr: 0.01\n  batch_size: 32\n"


def _search(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = CliRunner().invoke(cli.app, ["search", "--task", "anomaly", "--trials", "1", "--epochs", "2", "--pruner",
                                       "none", "--space", str(space), "--out-dir", str(tmp_path / "runs"),
                                       "--device", "cpu", *args])
    return out.exit_code, out.output, out.stderr


@pytest.mark.parametrize("name", ["average_precision", "f1"])
def test_a_search_selects_and_records_the_chosen_metric(tmp_path: Path, name: str) -> None:
    src = make_anomaly_csv(tmp_path / "t.csv", n=150, anomalies=12)
    code, output, _ = _search(tmp_path, "--data", str(src), "--target", "label", "--metric", name, "--study", "m")
    assert code == 0, output
    best = json.loads((tmp_path / "runs" / "m" / "best.json").read_text())
    m, pred = best["metrics"], best["test_predictions"]
    assert m["metric"] == name and f"val {name}" in output
    y, scores, thr = np.array(pred["y_true"]), np.array(pred["scores"]), pred["threshold"]
    if name == "average_precision":  # sklearn's AP of the score, the anomaly the positive class
        assert m["test_average_precision"] == pytest.approx(skm.average_precision_score(y, scores), abs=1e-5)
    else:  # F1 at the threshold chosen on validation (stored with the model), not one picked on test
        assert m["test_f1"] == pytest.approx(skm.f1_score(y, scores >= thr))
        assert pred["y_pred"] == [int(s >= thr) for s in scores]
    ckpt = torch.load(tmp_path / "runs" / "m" / "best.pt", map_location="cpu", weights_only=True)
    spec = ckpt["preprocess"]
    assert spec["threshold"] == pytest.approx(thr) and "maximises F1" in spec["threshold_rule"]
    assert "decision_threshold" not in ckpt["preprocess"]  # the binary classifiers' probability cut does not apply


@pytest.mark.parametrize(("args", "fragments"), [
    (["--metric", "log_loss"], ["--metric log_loss does not fit the anomaly task",
                                "choose from: roc_auc, average_precision, f1"]),
    (["--metric", "rmse"], ["--metric rmse does not fit the anomaly task"]),
    (["--metric", "f2"], ["unknown metric 'f2' for the anomaly task", "choose from: roc_auc, average_precision, f1"]),
    (["--metric", "recon_error"], ["--metric recon_error does not fit the anomaly task"]),
])
def test_a_metric_that_does_not_fit_is_one_line(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    src = make_anomaly_csv(tmp_path / "t.csv", n=60, anomalies=4)
    code, output, err = _search(tmp_path, "--data", str(src), "--target", "label", *args)
    assert code == 1 and "Traceback" not in output and len(err.strip().splitlines()) == 1, output
    assert all(f in err for f in fragments), err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("best.pt"))


def test_a_labelled_metric_without_labels_is_one_line(tmp_path: Path) -> None:
    src = make_anomaly_csv(tmp_path / "t.csv", n=60, anomalies=4, label=False)
    code, output, err = _search(tmp_path, "--data", str(src), "--metric", "average_precision")
    assert code == 1 and len(err.strip().splitlines()) == 1, output
    assert "--metric average_precision needs labels (--target COLUMN" in err


def test_the_anomaly_is_the_positive_class_even_where_it_is_the_majority(tmp_path: Path) -> None:
    """The registry's binary metrics call the rarer class positive; here label 1 (anomaly) is."""
    task = get_task("anomaly")
    task.choose_metric("average_precision")
    bundle = task.load_data(DataConfig(source=str(make_anomaly_csv(tmp_path / "t.csv", n=60, anomalies=40)),
                                       target="label", normal=("normal",)))
    task.bind(bundle)
    assert int(bundle.y_val.sum()) > len(bundle.y_val) / 2 and task.positive == 1
    s = torch.linspace(0, 1, len(bundle.y_val)) + bundle.y_val.float()
    y = bundle.y_val.numpy()
    assert task.metric_fn()(s, bundle.y_val) == pytest.approx(skm.average_precision_score(y, s.numpy()))
    task.choose_metric("roc_auc")
    assert task.metric_fn()(-s, bundle.y_val) == pytest.approx(skm.roc_auc_score(y, -s.numpy()))


def test_f1_on_test_uses_the_validation_threshold(tmp_path: Path) -> None:
    task = get_task("anomaly")
    task.choose_metric("f1")
    bundle = task.load_data(DataConfig(source=str(make_anomaly_csv(tmp_path / "t.csv")), target="label"))
    task.bind(bundle)
    y = bundle.y_test.numpy()
    test = bundle.y_test.float() * 2.0 + 1.0  # normal 1.0, anomalies 3.0
    low = bundle.y_test.float() * 1.0 + 0.1  # anomalies at 1.1: under the validation cut of 2.5
    f1 = task.metric_fn()  # one scorer: validation first (best.json), then test
    assert f1(bundle.y_val.float() * 2.0 + 0.5, bundle.y_val) == pytest.approx(1.0)  # the cut: 2.5, F1 1
    assert f1(low, bundle.y_test) == 0.0  # a cut picked on test (any in (0.1, 1.1]) would give F1 1
    assert f1(test, bundle.y_test) == pytest.approx(skm.f1_score(y, test.numpy() >= 2.5))
    assert task.metric_fn(1.05)(low, bundle.y_test) == pytest.approx(1.0)  # an explicit threshold wins
    # the leaderboard's task.score: validation then test, the same rule
    assert task.score(np.full(len(bundle.y_val), 0.5) + 2 * bundle.y_val.numpy(), bundle.y_val.numpy()) == 1.0
    assert task.score(low.numpy(), y) == 0.0


def test_compress_order_scores_every_test_variant_at_one_cut(tmp_path: Path) -> None:
    """compress scores the test split first (the reference), then validation (fine-tuning), then each
    variant on test: the variants are compared at the cut the first test scoring chose."""
    task = get_task("anomaly")
    task.choose_metric("f1")
    bundle = task.load_data(DataConfig(source=str(make_anomaly_csv(tmp_path / "t.csv")), target="label"))
    task.bind(bundle)
    y = bundle.y_test.numpy()
    ref = bundle.y_test.float() * 2.0 + 1.0  # the cut chosen on it: 3.0 (F1 1)
    f1 = task.metric_fn()
    assert f1(ref, bundle.y_test) == pytest.approx(1.0)
    f1(bundle.y_val.float() * 0.1, bundle.y_val)  # validation: its own cut (0.1), not the test one
    variant = ref - 0.5  # anomalies now at 2.5: under the reference's cut
    assert f1(variant, bundle.y_test) == pytest.approx(skm.f1_score(y, variant.numpy() >= 3.0)) == 0.0
    assert f1(ref, bundle.y_test) == pytest.approx(1.0)  # the reference itself, again


def test_a_resumed_study_keeps_its_anomaly_metric(tmp_path: Path) -> None:
    src = str(make_anomaly_csv(tmp_path / "t.csv", n=100, anomalies=8))
    code, output, _ = _search(tmp_path, "--data", src, "--target", "label", "--metric", "average_precision",
                              "--study", "r")
    assert code == 0, output
    code, output, _ = _search(tmp_path, "--data", src, "--target", "label", "--study", "r")
    assert code == 0 and "val average_precision" in output, output
    code, output, err = _search(tmp_path, "--data", src, "--target", "label", "--metric", "f1", "--study", "r")
    assert code == 1 and "was created with --metric average_precision, not --metric f1" in err, output
