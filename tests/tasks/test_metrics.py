"""Every registered metric gets the same checks (generated from the registry: a task's new metric is
tested without a new test), its value against ``sklearn.metrics`` on fixed predictions and its
direction; every task's metric is a registered one whose direction it shares."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm

from automl.exceptions import ConfigError
from automl.tasks import gap_text, get_metric, get_task, list_metrics, list_tasks

# Fixed predictions: a binary, a multiclass and a regression case.
Y_BIN = np.array([0, 0, 1, 1, 0, 1, 0, 0, 1, 0])
P_BIN = np.array([0.1, 0.6, 0.7, 0.4, 0.2, 0.9, 0.3, 0.55, 0.8, 0.05])  # positive-class probabilities
Y_MC = np.array([0, 1, 2, 2, 1, 0, 2, 1])
P_MC = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3],
                 [0.1, 0.8, 0.1], [0.4, 0.4, 0.2], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
Y_REG = np.array([3.0, -0.5, 2.0, 7.0, 1.5])
P_REG = np.array([2.5, 0.0, 2.0, 8.0, 1.0])


def _proba2(p: np.ndarray) -> np.ndarray:
    return np.stack([1 - p, p], axis=1)


#: each metric's value computed straight from sklearn.metrics: (problem -> (y, pred given, expected))
EXPECTED = {
    "accuracy": ("maximize", lambda: {
        "binary": (Y_BIN, _proba2(P_BIN), skm.accuracy_score(Y_BIN, P_BIN >= 0.5)),
        "multiclass": (Y_MC, P_MC, skm.accuracy_score(Y_MC, P_MC.argmax(1)))}),
    "balanced_accuracy": ("maximize", lambda: {
        "binary": (Y_BIN, _proba2(P_BIN), skm.balanced_accuracy_score(Y_BIN, P_BIN >= 0.5)),
        "multiclass": (Y_MC, P_MC, skm.balanced_accuracy_score(Y_MC, P_MC.argmax(1)))}),
    "f1": ("maximize", lambda: {"binary": (Y_BIN, _proba2(P_BIN), skm.f1_score(Y_BIN, P_BIN >= 0.5))}),
    "f1_macro": ("maximize", lambda: {
        "binary": (Y_BIN, _proba2(P_BIN), skm.f1_score(Y_BIN, P_BIN >= 0.5, average="macro")),
        "multiclass": (Y_MC, P_MC, skm.f1_score(Y_MC, P_MC.argmax(1), average="macro"))}),
    "roc_auc": ("maximize", lambda: {
        "binary": (Y_BIN, _proba2(P_BIN), skm.roc_auc_score(Y_BIN, P_BIN)),
        "multiclass": (Y_MC, P_MC, skm.roc_auc_score(Y_MC, P_MC, multi_class="ovr", average="macro"))}),
    "average_precision": ("maximize", lambda: {
        "binary": (Y_BIN, _proba2(P_BIN), skm.average_precision_score(Y_BIN, P_BIN))}),
    "log_loss": ("minimize", lambda: {
        "binary": (Y_BIN, _proba2(P_BIN), skm.log_loss(Y_BIN, _proba2(P_BIN))),
        "multiclass": (Y_MC, P_MC, skm.log_loss(Y_MC, P_MC))}),
    "rmse": ("minimize", lambda: {"regression": (Y_REG, P_REG, np.sqrt(skm.mean_squared_error(Y_REG, P_REG)))}),
    "mae": ("minimize", lambda: {"regression": (Y_REG, P_REG, skm.mean_absolute_error(Y_REG, P_REG))}),
    "r2": ("maximize", lambda: {"regression": (Y_REG, P_REG, skm.r2_score(Y_REG, P_REG))}),
    "mape": ("minimize", lambda: {"regression": (Y_REG, P_REG, skm.mean_absolute_percentage_error(Y_REG, P_REG))}),
    # no labels (the anomaly task): the mean held-out anomaly score; the targets are ignored
    "recon_error": ("minimize", lambda: {"unlabelled": (Y_REG, P_REG, np.mean(P_REG))}),
}


@pytest.mark.parametrize("name", list_metrics())
def test_each_metric_matches_sklearn_on_fixed_predictions_and_has_its_direction(name: str) -> None:
    assert name in EXPECTED, f"metric {name!r} has no sklearn reference value in this test: add one to EXPECTED"
    direction, cases = EXPECTED[name]
    metric = get_metric(name)
    assert metric.direction == direction
    table = cases()
    assert set(table) == set(metric.fits), "the problems it fits are the ones it is checked on"
    for problem, (y, pred, want) in table.items():
        assert metric.score(pred, y) == pytest.approx(float(want), rel=1e-9), problem
        if problem == "binary" and metric.scores:  # a 1-D positive-class score (anomaly scores) gives the same
            assert metric.score(pred[:, 1], y) == pytest.approx(float(want), rel=1e-9)


@pytest.mark.parametrize("name", list_metrics())
def test_exact_predictions_score_better_than_wrong_ones(name: str) -> None:
    metric = get_metric(name)
    if metric.labels:
        y = np.array([0, 1, 1, 0, 1, 0], dtype=np.int64)
        exact, wrong = np.eye(2)[y] * 0.9 + 0.05, np.eye(2)[1 - y] * 0.9 + 0.05
    else:
        y = np.array([0.5, -1.0, 2.0, 3.5], dtype=np.float32)
        exact, wrong = y.copy(), y + 1.0
    good, off = metric.score(exact, y), metric.score(wrong, y)
    assert (good > off) if metric.maximize else (good < off), (good, off)
    assert metric.score(exact[:0], y[:0]) == 0.0  # no rows: 0, never a NaN from an empty mean


def test_label_metrics_apply_the_decision_threshold() -> None:
    f1 = get_metric("f1")
    assert f1.score(P_BIN, Y_BIN, threshold=0.65) == pytest.approx(skm.f1_score(Y_BIN, P_BIN >= 0.65))
    assert f1.score(P_BIN, Y_BIN, threshold=0.65) != f1.score(P_BIN, Y_BIN)
    assert get_metric("accuracy").score(np.array([0, 1, 1]), np.array([0, 1, 0])) == pytest.approx(2 / 3)  # labels


def test_roc_auc_of_a_split_with_one_class_is_chance_not_an_error() -> None:
    assert get_metric("roc_auc").score(np.array([0.2, 0.7]), np.array([1, 1])) == 0.5


def test_accuracy_and_rmse_keep_their_values_and_wording() -> None:
    acc, rmse = get_metric("accuracy"), get_metric("rmse")
    assert acc.score(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.75 and acc.labels and acc.maximize
    assert rmse.score(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == pytest.approx(np.sqrt(5.0))
    assert not rmse.labels and not rmse.maximize
    assert gap_text("accuracy", -0.021, 0.9) == "2.1 points below"
    assert gap_text("rmse", 0.5, 10.0) == "5.0% above"
    assert gap_text("no-such-metric", 0.01, 0.5) == "1.0 points above"  # a study of a metric not known here
    with pytest.raises(ConfigError, match="unknown metric 'f2'"):
        get_metric("f2")


@pytest.mark.parametrize("name", list_tasks())
def test_each_tasks_metric_is_registered_with_the_tasks_direction(name: str) -> None:
    task = get_task(name)
    assert task.metric_spec.name == task.metric and task.metric_spec.direction == task.direction
    assert task.stratified == task.metric_spec.labels


def test_tabular_regression_switches_to_rmse_and_stops_stratifying() -> None:
    task = get_task("tabular")
    assert task.stratified
    task._set_problem("regression")
    assert task.metric_spec.name == "rmse" and not task.stratified and task.direction == "minimize"


@pytest.mark.parametrize("name", list_metrics())
def test_choosing_a_metric_sets_the_tasks_metric_and_direction(name: str) -> None:
    task = get_task("tabular")
    if not get_metric(name).fits & set(task.problem_types):  # recon_error: unlabelled data only (anomaly)
        with pytest.raises(ConfigError, match="choose from: "):
            task.choose_metric(name)
        return
    task.choose_metric(name)
    assert (task.metric, task.direction) == (name, get_metric(name).direction)
    for problem in ("binary", "multiclass", "regression"):
        if problem in get_metric(name).fits:
            task.fit_metric(problem)
        else:
            with pytest.raises(ConfigError, match="choose from: "):
                task.fit_metric(problem)
