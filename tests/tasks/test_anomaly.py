"""The anomaly task: one-class splits, the label rules and their errors, the threshold, output formatting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import cli
from automl.exceptions import DataError
from automl.tasks import DataConfig, get_task


def make_anomaly_csv(path: Path, n: int = 300, anomalies: int = 24, seed: int = 0, labels: tuple[str, ...] = ("normal",
                     "anomaly"), label: bool = True) -> Path:
    """Normal rows lie near a 2-D plane in 6-D; anomalies are scattered off it. ``labels``: the normal
    value, then the anomalies' values (cycled)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 6))
    normal = rng.normal(size=(n, 2)) @ basis + 0.05 * rng.normal(size=(n, 6))
    odd = rng.normal(scale=2.0, size=(anomalies, 6))
    frame = pd.DataFrame(np.vstack([normal, odd]), columns=[f"f{i}" for i in range(6)])
    if label:
        frame["label"] = [labels[0]] * n + [labels[1 + i % (len(labels) - 1)] for i in range(anomalies)]
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame.to_csv(path, index=False)
    return path


def test_training_holds_normal_rows_only_and_both_evaluation_splits_hold_anomalies(tmp_path: Path) -> None:
    task = get_task("anomaly")
    bundle = task.load_data(DataConfig(source=str(make_anomaly_csv(tmp_path / "t.csv", anomalies=3)), target="label"))
    assert int(bundle.y_train.sum()) == 0 and len(bundle.y_train) == 210  # 70% of the 300 normal rows
    assert int(bundle.y_val.sum()) == 2 and int(bundle.y_test.sum()) == 1  # every anomaly is evaluated
    assert task.metric == "roc_auc" and bundle.meta["preprocess"]["kind"] == "anomaly"
    assert "normal: 'normal' (by its name" in bundle.meta["notes"][0]


def test_two_values_without_normal_names_the_more_frequent_one_normal(tmp_path: Path) -> None:
    src = make_anomaly_csv(tmp_path / "t.csv", labels=("a", "b"))
    bundle = get_task("anomaly").load_data(DataConfig(source=str(src), target="label"))
    assert "normal: 'a' (the more frequent value" in bundle.meta["notes"][0]
    flipped = get_task("anomaly").load_data(DataConfig(source=str(src), target="label", normal=("b",)))
    assert int(flipped.y_val.sum()) > int(flipped.y_val.numel()) / 2  # the 300 'a' rows are the anomalies now


def _search_line(args: list[str]) -> tuple[int, str]:
    out = CliRunner().invoke(cli.app, ["search", "--task", "anomaly", "--trials", "1", "--epochs", "1", *args])
    return out.exit_code, out.output


def test_three_valued_label_without_normal_is_one_clear_line(tmp_path: Path) -> None:
    src = make_anomaly_csv(tmp_path / "t.csv", labels=("ok", "bad", "worse"))
    code, output = _search_line(["--data", str(src), "--target", "label", "--out-dir", str(tmp_path / "runs")])
    assert code != 0 and "Traceback" not in output
    assert "label column 'label' has 3 values ('bad', 'ok', 'worse'); say which are normal with --normal" in output
    assert len(output.strip().splitlines()) == 1


def test_no_anomalies_for_validation_is_one_clear_line(tmp_path: Path) -> None:
    src = make_anomaly_csv(tmp_path / "t.csv", anomalies=1)
    code, output = _search_line(["--data", str(src), "--target", "label", "--out-dir", str(tmp_path / "runs")])
    assert code != 0 and len(output.strip().splitlines()) == 1
    assert "no anomalies in the validation split: only 1 row is an anomaly" in output
    with pytest.raises(DataError, match="no row is an anomaly"):  # --normal names every value
        get_task("anomaly").load_data(DataConfig(source=str(src), target="label", normal=("normal", "anomaly")))


def test_bad_normal_and_contamination_are_one_clear_line(tmp_path: Path) -> None:
    src = make_anomaly_csv(tmp_path / "t.csv")
    out = ["--out-dir", str(tmp_path / "runs")]
    code, output = _search_line(["--data", str(src), "--target", "label", "--normal", "fine", *out])
    assert code != 0 and "--normal 'fine' is not a value of label column 'label'" in output
    code, output = _search_line(["--data", str(src), "--contamination", "0.7", *out])
    assert code != 0 and "--contamination must be in (0, 0.5), got 0.7" in output


def test_no_label_and_no_contamination_uses_the_documented_default(tmp_path: Path) -> None:
    task = get_task("anomaly")
    bundle = task.load_data(DataConfig(source=str(make_anomaly_csv(tmp_path / "t.csv", label=False))))
    assert task.metric == "recon_error" and task.direction == "minimize"
    assert task.reference_model(bundle) is None  # no labelled metric: nothing to compare
    assert "no labelled metric exists" in bundle.meta["notes"][0]
    assert "the documented default 0.01" in bundle.meta["notes"][0]
    labelled_source = make_anomaly_csv(tmp_path / "l.csv")
    notes = get_task("anomaly").load_data(DataConfig(source=str(labelled_source))).meta["notes"]
    assert "column 'label' is used as a feature; if it holds labels, pass --target label" in notes[1]
    assert len(bundle.y_train) == 227  # every row may train: 70% of 324
    # the threshold: the 99th percentile of held-out scores
    scores = torch.linspace(0, 1, len(bundle.y_val))
    task.metric_fn()(scores, bundle.y_val)
    task.metric_fn()(torch.zeros(len(bundle.y_test)), bundle.y_test)
    task.test_predictions(torch.zeros(len(bundle.y_test)), bundle)
    assert bundle.meta["preprocess"]["threshold"] == pytest.approx(float(np.quantile(scores.numpy(), 0.99)))
    assert "default contamination 0.01" in bundle.meta["preprocess"]["threshold_rule"]


def test_threshold_maximises_validation_f1_and_outputs_follow_it(tmp_path: Path) -> None:
    task = get_task("anomaly")
    bundle = task.load_data(DataConfig(source=str(make_anomaly_csv(tmp_path / "t.csv")), target="label"))
    y_val = bundle.y_val
    val_scores = y_val.float() * 2.0 + 0.5  # normal 0.5, anomalies 2.5: F1 is 1 from any cut in (0.5, 2.5]
    task.metric_fn()(val_scores, y_val)
    test_scores = torch.arange(len(bundle.y_test), dtype=torch.float32)
    task.metric_fn()(test_scores, bundle.y_test)
    pred = task.test_predictions(test_scores, bundle)
    spec = bundle.meta["preprocess"]
    assert spec["threshold"] == pytest.approx(2.5) and "F1 1.000" in spec["threshold_rule"]
    assert pred["y_pred"] == [int(s >= 2.5) for s in test_scores.tolist()]
    task.validate_spec(spec)  # the spec stays valid, and remembers the threshold for format_outputs
    rows = task.format_outputs(np.array([2.4, 2.5, 7.0], dtype=np.float32), [])
    assert [r["is_anomaly"] for r in rows] == [False, True, True] and rows[2]["score"] == pytest.approx(7.0)
    assert task.describe_spec(spec)["threshold"] == pytest.approx(2.5)
    with pytest.raises(DataError, match="threshold must be a finite number"):
        task.validate_spec({**spec, "threshold": float("nan")})


def test_metric_is_sklearns_auroc_on_the_score(tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    task = get_task("anomaly")
    y = torch.tensor([0, 0, 1, 0, 1, 1])
    s = torch.tensor([0.1, 0.4, 0.35, 0.2, 0.8, 0.9])
    task.prepare(DataConfig(source="x.csv", target="label"))
    assert task.metric_fn()(s, y) == pytest.approx(roc_auc_score(y.numpy(), s.numpy()))
    assert task.metric_fn()(s, torch.zeros(6, dtype=torch.long)) == 0.5  # one class: chance, not a crash


def test_unlabelled_search_says_no_labelled_metric_exists_and_stores_the_default_threshold(tmp_path: Path) -> None:
    src = make_anomaly_csv(tmp_path / "t.csv", n=120, anomalies=4, label=False)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  model: ae\n  depth: 1\n  width: 16\n  bottleneck: 2\n  batch_size: 32\n")
    code, output = _search_line(["--data", str(src), "--space", str(space), "--out-dir", str(tmp_path / "runs"),
                                 "--study", "u"])
    assert code == 0, output
    assert "recon_error" in output and "no labelled metric exists" in output
    ckpt = torch.load(tmp_path / "runs" / "u" / "best.pt", map_location="cpu", weights_only=True)
    assert "default contamination 0.01" in ckpt["preprocess"]["threshold_rule"]
    assert isinstance(ckpt["preprocess"]["threshold"], float)


def test_contamination_threshold_comes_from_the_spec_not_the_loading_instance(tmp_path: Path) -> None:
    """With --jobs the process that writes best.pt may not have loaded the data itself."""
    src = make_anomaly_csv(tmp_path / "t.csv", label=False)
    bundle = get_task("anomaly").load_data(DataConfig(source=str(src), contamination=0.1))
    writer = get_task("anomaly")
    scores = torch.linspace(0, 1, len(bundle.y_val))
    writer.metric_fn()(scores, bundle.y_val)
    writer.test_predictions(torch.ones(len(bundle.y_test)), bundle)
    spec = bundle.meta["preprocess"]
    assert spec["threshold"] == pytest.approx(float(np.quantile(scores.numpy(), 0.9)))
    assert "(--contamination 0.1)" in spec["threshold_rule"]
