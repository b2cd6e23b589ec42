"""The knowledge the Python API and the model card used to take from a task's name now comes from the
task (``Task.in_memory_table``, ``memory_table_format``, ``card_pipeline_tag``, ``card_tags``,
``feature_names``, ``python_inputs``): a task registered here gets in-memory data and its own card tag
with no other file changed, and the built-in tasks keep their former answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from automl.exceptions import ConfigError
from automl.lineage.card import front_matter
from automl.tasks import Task, get_task, register_task, unregister_task


class ColumnsTask(Task):
    """Stores an in-memory table as csv, upper-casing its column names; a card tag of its own."""

    memory_table_format = "csv"
    card_tags = ("toy-columns",)

    def in_memory_table(self, data: Any, target: str | None) -> tuple[Any, str | None]:
        frame = data.rename(columns=str.upper)
        return frame, target.upper() if target else None

    def card_pipeline_tag(self, data: dict[str, Any]) -> str:
        return "feature-extraction"


@pytest.fixture
def columns_task() -> Iterator[str]:
    register_task("toycolumns")(ColumnsTask)
    yield "toycolumns"
    unregister_task("toycolumns")


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"], "y": ["p", "q", "p"]})


def test_a_new_task_stores_in_memory_data_its_own_way(columns_task: str, tmp_path: Path) -> None:
    from automl.api._data import resolve_data

    source = resolve_data(columns_task, _frame(), "y", tmp_path, None)
    assert source.source.endswith(".csv") and source.target == "Y"
    assert source.study.startswith("toycolumns-frame-")
    assert list(pd.read_csv(source.source).columns) == ["A", "B", "Y"]


def test_anomaly_stores_a_table_as_tabular_does(tmp_path: Path) -> None:
    from automl.api._data import resolve_data

    anomaly = resolve_data("anomaly", _frame(), None, tmp_path, None)
    tabular = resolve_data("tabular", _frame(), None, tmp_path, None)
    assert anomaly.source.endswith(".parquet") and anomaly.target is None
    assert pd.read_parquet(anomaly.source).equals(pd.read_parquet(tabular.source))
    pair = resolve_data("anomaly", (np.zeros((4, 2)), [0, 0, 0, 1]), None, tmp_path, None)
    assert pair.target == "y" and list(pd.read_parquet(pair.source).columns) == ["x0", "x1", "y"]


def test_a_task_that_reads_folders_refuses_in_memory_data(tmp_path: Path) -> None:
    from automl.api._data import resolve_data

    with pytest.raises(ConfigError, match="the image task reads a folder: pass its path as data="):
        resolve_data("image", _frame(), "y", tmp_path, None)
    assert not list(tmp_path.iterdir())  # nothing written


def _card(task: str, **data: Any) -> dict[str, Any]:
    report = {"task": task, "metric": "accuracy", "variants": [{"name": "fp32", "kind": "fp32"}],
              "recommended": "x.onnx", "recommended_variant": "fp32", "lineage": {"data": data}}
    return front_matter(report)


@pytest.mark.parametrize(("task", "data", "tag"), [
    ("tabular", {"classes": ["a", "b"]}, "tabular-classification"),
    ("tabular", {"classes": []}, "tabular-regression"),
    ("text", {"classes": ["neg", "pos"]}, "text-classification"),
    ("image", {"classes": ["0", "1"]}, "image-classification"),
    ("anomaly", {"source": "rows.csv"}, "tabular-classification"),
    ("anomaly", {"source": "digits"}, "image-classification"),
    ("elsewhere", {}, "elsewhere"),  # a report of a task this install does not know keeps its name
])
def test_each_task_names_its_card_pipeline_tag(task: str, data: dict[str, Any], tag: str) -> None:
    meta = _card(task, **data)
    assert meta["pipeline_tag"] == tag == meta["model-index"][0]["results"][0]["task"]["type"]
    assert ("anomaly-detection" in meta["tags"]) == (task == "anomaly")


def test_a_new_task_names_its_card_pipeline_tag_and_tags(columns_task: str) -> None:
    meta = _card(columns_task)
    assert meta["pipeline_tag"] == "feature-extraction"
    assert meta["tags"][4:6] == ["toycolumns", "toy-columns"]


def test_predictor_inputs_come_from_the_task() -> None:
    spec = {"columns": [{"name": "a"}, {"name": "b"}], "target": "y"}
    tabular, text = get_task("tabular"), get_task("text")
    assert tabular.feature_names(spec) == ["a", "b"] and text.feature_names(spec) == []
    assert tabular.python_inputs(np.array([[1.0, np.nan]]), spec) == [{"a": 1.0, "b": None}]
    assert tabular.python_inputs(pd.DataFrame({"a": [1], "b": [2], "y": [0]}), spec) == [{"a": 1, "b": 2}]
    assert text.python_inputs("not a file, a text", spec) == ["not a file, a text"]
    assert text.python_inputs(["one", "two"], spec) == ["one", "two"]
    anomaly_spec = {**spec, "kind": "anomaly", "input_kind": "tabular"}
    assert get_task("anomaly").feature_names(anomaly_spec) == ["a", "b"]
