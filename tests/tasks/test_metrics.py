"""Every registered metric gets the same checks (generated from the registry: a task's new metric is
tested without a new test), and every task's metric is a registered one whose direction it shares."""

from __future__ import annotations

import numpy as np
import pytest

from automl.exceptions import ConfigError
from automl.tasks import gap_text, get_metric, get_task, list_metrics, list_tasks


@pytest.mark.parametrize("name", list_metrics())
def test_exact_predictions_score_better_than_wrong_ones(name: str) -> None:
    metric = get_metric(name)
    if metric.labels:
        y = np.array([0, 1, 2, 1, 0], dtype=np.int64)
        wrong = (y + 1) % 3
    else:
        y = np.array([0.5, -1.0, 2.0, 3.5], dtype=np.float32)
        wrong = y + 1.0
    exact, off = metric.score(y.copy(), y), metric.score(wrong, y)
    assert (exact > off) if metric.maximize else (exact < off), (exact, off)
    assert metric.score(y[:0], y[:0]) == 0.0  # no rows: 0, never a NaN from an empty mean


def test_accuracy_and_rmse_keep_their_values_and_wording() -> None:
    acc, rmse = get_metric("accuracy"), get_metric("rmse")
    assert acc.score(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.75 and acc.labels and acc.maximize
    assert rmse.score(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == pytest.approx(np.sqrt(5.0))
    assert not rmse.labels and not rmse.maximize
    assert gap_text("accuracy", -0.021, 0.9) == "2.1 points below"
    assert gap_text("rmse", 0.5, 10.0) == "5.0% above"
    assert gap_text("no-such-metric", 0.01, 0.5) == "1.0 points above"  # a study of a metric not known here
    with pytest.raises(ConfigError, match="unknown metric 'f1'"):
        get_metric("f1")


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
