"""The Python API (issue 27, Done-when 4): ``automl.search`` on in-memory data, a path and ``(X, y)``
arrays, its result (best model, leaderboard, compress, export), ``automl.Predictor``, the progress
callback, silence on stdout/stderr, and one clear error for a bad keyword."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import automl
from automl.exceptions import ConfigError, DataError


def _frame(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    df["colour"] = rng.choice(["red", "green"], n)
    df["y"] = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    return df


def test_notebook_search_on_a_dataframe_is_silent_and_its_onnx_matches_the_module(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import optuna

    df = _frame()
    filters, verbosity = list(warnings.filters), optuna.logging.get_verbosity()
    level = logging.getLogger("optuna").level
    result = automl.search(task="tabular", data=df, target="y", timeout=30, trials=3, epochs=2, out=tmp_path,
                           device="cpu")
    assert isinstance(result.best_model, torch.nn.Module)
    board = result.leaderboard
    assert isinstance(board, pd.DataFrame) and set(board["kind"]) <= {"family", "reference", "ensemble"}
    assert board.loc[0, "name"] == result.params.get("model", board.loc[0, "name"])  # best first
    assert board.attrs == {"metric": "accuracy", "direction": "maximize"}
    ended = [t for t in result.study.trials if t.state.is_finished()]  # (the other families' firsts wait)
    assert len(ended) == 3 and result.best_pt.is_file()
    # the data went into the run folder as one parquet file, named by its content
    assert [p.name for p in result.best_pt.parent.glob("frame-*.parquet")] == [
        f"{result.summary.study.removeprefix('tabular-')}.parquet"]

    predictor = automl.Predictor(result.best_pt)
    rows = df.head(20)
    labels = predictor.predict(rows)
    assert labels.shape == (20,) and set(labels) <= {"yes", "no"}
    logits = result.best_model(torch.from_numpy(predictor.encode(rows))).detach().numpy()
    assert (np.array(predictor.classes)[logits.argmax(1)] == labels).all()

    table = result.compress(quantize="none", finetune_epochs=0, warmup=0, repeats=2)
    assert isinstance(table, pd.DataFrame) and "fp32" in set(table["name"])
    onnx_path = Path(table.set_index("name").loc["fp32", "path"])
    assert onnx_path.suffix == ".onnx" and onnx_path.is_file()
    onnx = automl.Predictor(onnx_path)
    assert onnx.format == "onnx"
    np.testing.assert_allclose(onnx.outputs(rows), logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(onnx.predict_proba(rows), predictor.predict_proba(rows), atol=1e-5, rtol=0)
    assert (onnx.predict(rows) == labels).all()

    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # the caller's logging and warning settings are as they were
    assert warnings.filters == filters and optuna.logging.get_verbosity() == verbosity
    assert logging.getLogger("optuna").level == level


def test_search_on_arrays_calls_progress_and_predicts_arrays(tmp_path: Path) -> None:
    df = _frame(120, seed=1)
    x, y = df[["a", "b", "c"]].to_numpy(), (df["y"] == "yes").astype(int).to_numpy()
    events: list[dict] = []
    result = automl.search(data=(x, y), trials=2, epochs=1, out=tmp_path, device="cpu", progress=events.append)
    assert result.summary.task == "tabular"  # in-memory data means the tabular task
    kinds = [e["event"] for e in events]
    assert kinds.count("trial_start") == 2 and kinds.count("trial_end") == 2
    ended = [e for e in events if e["event"] == "trial_end"]
    assert {e["trial"] for e in ended} == {0, 1} and all(e["state"] in ("complete", "pruned", "fail") for e in ended)
    predictor = result.predictor()
    assert predictor.features == ["x0", "x1", "x2"] and predictor.classes == ["0", "1"]
    by_array = predictor.predict_proba(x[:7])
    by_frame = predictor.predict_proba(pd.DataFrame(x[:7], columns=predictor.features))
    np.testing.assert_array_equal(by_array, by_frame)
    np.testing.assert_allclose(by_array.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(DataError, match=r"shape \(rows, 3\)"):
        predictor.predict(x[:, :2])


def test_search_on_a_path_exports_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    df = _frame(120, seed=2)
    df["y"] = df["a"] * 2.0 + df["b"]  # a regression
    df.to_csv(path, index=False)
    result = automl.search(task="tabular", data=str(path), target="y", trials=1, epochs=1, out=tmp_path / "runs",
                           device="cpu")
    assert result.summary.study == "tabular-rows" and result.metric == "rmse"
    onnx_path = result.export()
    assert onnx_path == result.best_pt.with_name("best.onnx")
    values = automl.Predictor(onnx_path).predict(str(path))
    assert values.dtype == np.float64 and values.shape == (120,)
    with pytest.raises(DataError, match="regression"):
        automl.Predictor(onnx_path).predict_proba(df)


def test_a_bad_keyword_is_one_clear_error_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown keyword 'sampeler' \(did you mean 'sampler'\?\)"):
        automl.search(task="tabular", data=_frame(), target="y", sampeler="tpe", out=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before the data was written
    with pytest.raises(ConfigError, match="unknown sampler"):
        automl.search(task="tabular", data=_frame(), target="y", sampler="nope", out=tmp_path)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="progress= must be a callable"):
        automl.search(data=_frame(), target="y", progress="yes", out=tmp_path)
    with pytest.raises(ConfigError, match="unknown keyword 'prune'"):
        automl.compress(tmp_path / "best.pt", prune=0.5)
    with pytest.raises(ConfigError, match="pandas DataFrame or an"):
        automl.search(task="tabular", data=42, out=tmp_path)


def test_the_same_frame_resumes_its_study_and_another_makes_a_new_one(tmp_path: Path) -> None:
    from automl.api._data import resolve_data

    a = resolve_data("tabular", _frame(), "y", tmp_path, None)
    again = resolve_data("tabular", _frame().set_index(np.arange(160) + 7), "y", tmp_path, None)
    other = resolve_data("tabular", _frame(seed=3), "y", tmp_path, None)
    assert a == again and a.study != other.study
    assert Path(a.source).is_absolute()  # compress reads it later from any working folder
    assert pd.read_parquet(a.source).equals(_frame())


def test_text_data_in_memory_becomes_a_text_and_label_table(tmp_path: Path) -> None:
    from automl.api._data import resolve_data

    pair = resolve_data("text", (["good film", "bad film"], ["pos", "neg"]), None, tmp_path, None)
    frame = resolve_data("text", pd.DataFrame({"text": ["good film", "bad film"], "mood": ["pos", "neg"]}),
                         "mood", tmp_path, None)
    assert pair.target == frame.target == "label" and pair.source == frame.source  # same rows, same file
    assert pd.read_csv(pair.source).to_dict("list") == {"text": ["good film", "bad film"], "label": ["pos", "neg"]}
    with pytest.raises(DataError, match="needs a 'text' column"):
        resolve_data("text", pd.DataFrame({"body": ["x"], "label": ["a"]}), None, tmp_path, None)
    with pytest.raises(ConfigError, match="the image task reads a folder"):
        resolve_data("image", _frame(), "y", tmp_path, None)


def test_import_automl_stays_light_and_names_the_api() -> None:
    import subprocess
    import sys

    code = ("import sys, automl; heavy = [m for m in ('torch', 'optuna', 'pandas', 'compress') if m in sys.modules]; "
            "assert not heavy, heavy; assert {'search', 'compress', 'Predictor'} <= set(dir(automl)); "
            "assert callable(automl.search) and automl.Predictor.__name__ == 'Predictor'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_automl_search_stays_callable_once_the_search_package_is_imported() -> None:
    import importlib
    import inspect

    import automl.search.space  # Python binds the package to automl.search: it must stay the API's search

    assert callable(automl.search) and automl.search.space is importlib.import_module("automl.search.space")
    assert list(inspect.signature(automl.search).parameters)[:3] == ["task", "data", "target"]
    with pytest.raises(ConfigError, match="unknown keyword"):
        automl.search(task="tabular", data="wine", nonsense=1)


def test_the_api_docstring_session_runs(tmp_path: Path) -> None:
    import doctest

    import automl.api

    failed, tried = doctest.testmod(automl.api, extraglobs={"out": tmp_path}, optionflags=doctest.ELLIPSIS,
                                    raise_on_error=False, verbose=False)
    assert tried >= 7 and failed == 0


def test_quiet_records_each_warning_once_and_restores_everything_after_an_error() -> None:
    import optuna

    from automl.api._quiet import quiet

    optuna.logging.set_verbosity(optuna.logging.INFO)
    filters = list(warnings.filters)
    try:
        with pytest.raises(RuntimeError), quiet() as seen:
            assert optuna.logging.get_verbosity() == optuna.logging.ERROR
            for _ in range(1000):
                warnings.warn("again and again", UserWarning, stacklevel=1)
            warnings.filterwarnings("ignore")  # as library code does (automl.study.silence_optuna)
            raise RuntimeError
        assert seen == ["UserWarning: again and again"]
        assert optuna.logging.get_verbosity() == optuna.logging.INFO and warnings.filters == filters
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
