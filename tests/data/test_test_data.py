"""--test-data: a separate file is the test split; --data is split into training and validation only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl.exceptions import ConfigError, DataError
from automl.study import SearchSettings
from automl.tasks import DataConfig, get_task
from tests.study.test_trials import assert_one_line_error, invoke


def _table(path: Path, n: int, seed: int, **extra: object) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "target": np.where(x[:, 0] > 0, "yes", "no")})
    for k, v in extra.items():
        frame[k] = v
    frame.to_csv(path, index=False)
    return path


def test_tabular_test_file_is_the_whole_test_split(tmp_path: Path) -> None:
    train, test = _table(tmp_path / "train.csv", 200, 0), _table(tmp_path / "test.csv", 60, 1, extra_col=1)
    bundle = get_task("tabular").load_data(DataConfig(source=str(train), target="target", test_source=str(test)))
    sizes = bundle.sizes()
    assert sizes["test"] == 60 and sizes["train"] + sizes["val"] == 200
    assert sizes["val"] == pytest.approx(200 * 0.15 / 0.85, abs=2)
    # the test rows are the file's rows, in order, encoded with the training file's statistics
    raw = pd.read_csv(test)
    expected = np.where(raw["target"] == "yes", 1, 0)  # classes sorted: no, yes
    assert bundle.y_test.numpy().tolist() == expected.tolist()
    spec = bundle.meta["preprocess"]
    col = next(c for c in spec["columns"] if c["name"] == "a")
    assert bundle.x_test[0, 0].item() == pytest.approx((raw["a"][0] - col["mean"]) / col["std"], rel=1e-4)
    assert any("test split: the 60 rows of --test-data" in n for n in bundle.meta["notes"])


def test_tabular_test_file_errors_name_the_option(tmp_path: Path) -> None:
    train = _table(tmp_path / "train.csv", 100, 0)
    task = get_task("tabular")
    missing = tmp_path / "missing.csv"
    pd.read_csv(train).drop(columns=["b"]).to_csv(missing, index=False)
    with pytest.raises(DataError, match=r"--test-data .*missing.csv: column\(s\) 'b' of the training file"):
        task.load_data(DataConfig(source=str(train), target="target", test_source=str(missing)))
    unseen = tmp_path / "unseen.csv"
    frame = pd.read_csv(train)
    frame.loc[0, "target"] = "maybe"
    frame.to_csv(unseen, index=False)
    with pytest.raises(DataError, match="class 'maybe' of column 'target' is not in the training file"):
        task.load_data(DataConfig(source=str(train), target="target", test_source=str(unseen)))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"^--test-data .*empty.csv: the file is empty"):
        task.load_data(DataConfig(source=str(train), target="target", test_source=str(empty)))


def test_text_test_file(tmp_path: Path) -> None:
    rows = [("good fun film", "pos"), ("bad dull film", "neg")] * 40
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame([("fun", "pos"), ("dull", "neg"), ("good", "pos")], columns=["text", "label"]).to_csv(
        tmp_path / "test.csv", index=False)
    bundle = get_task("text").load_data(DataConfig(source=str(tmp_path / "train.csv"),
                                                  test_source=str(tmp_path / "test.csv")))
    assert bundle.sizes()["test"] == 3 and bundle.y_test.tolist() == [1, 0, 1]
    assert bundle.sizes()["train"] + bundle.sizes()["val"] == 80
    pd.DataFrame([("meh", "neutral")], columns=["text", "label"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="label 'neutral' is not in the training file"):
        get_task("text").load_data(DataConfig(source=str(tmp_path / "train.csv"),
                                              test_source=str(tmp_path / "bad.csv")))


def test_cli_refuses_a_missing_test_file_and_the_image_task(tmp_path: Path) -> None:
    r = invoke("search", "--task", "tabular", "--data", "wine", "--test-data", str(tmp_path / "nope.csv"),
               "--out-dir", str(tmp_path))
    assert_one_line_error(r, "--test-data", "no such file")
    with pytest.raises(ConfigError, match="--test-data is for the tabular and text tasks"):
        SearchSettings(task="image", test_data=str(tmp_path / "x.csv"))
