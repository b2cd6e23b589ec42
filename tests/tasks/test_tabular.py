"""The tabular task: reading and problem inference, the encoder fitted on the training split only,
raw records, regression end to end, ONNX parity, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from automl.data.tabular import encode_records, fit_tabular_spec, infer_problem
from automl.exceptions import DataError
from automl.runtime.inference import raw_to_model_input
from automl.tasks import DataConfig, get_task

CITIES = ["Oslo", "Bergen", "Trondheim"]


def make_tabular_frame(n: int = 300, seed: int = 0, regression: bool = False):  # noqa: ANN201
    """A learnable table with a numeric column with missing values, a few-level categorical with
    missing values (one-hot), a 40-level categorical (embedding) and a 'target' column."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    income = rng.lognormal(10, 0.5, n)
    city = rng.choice(CITIES, n)
    zips = rng.integers(0, 40, n)
    score = (age - 40) / 10 + np.select([city == "Oslo", city == "Bergen"], [1.5, -1.0], 0.0) + (zips % 2) * 1.2
    frame = pd.DataFrame({
        "age": np.where(rng.random(n) < 0.1, np.nan, age).round(1),
        "income": income.round(0),
        "city": np.where(rng.random(n) < 0.1, None, city),
        "zip": [f"Z{z:03d}" for z in zips],
    })
    if regression:
        frame["target"] = (50 + 20 * score + rng.normal(0, 2, n)).round(2)
    else:
        frame["target"] = np.where(score + rng.normal(0, 0.3, n) > 0.2, "yes", "no")
    return frame


def make_tabular_csv(path: Path, n: int = 300, seed: int = 0, regression: bool = False) -> Path:
    make_tabular_frame(n, seed, regression).to_csv(path, index=False)
    return path


# --- reading, inference, encoder ---------------------------------------------------------------


def test_infer_problem() -> None:
    import pandas as pd

    assert infer_problem(pd.Series(["a", "b"])) == "classification"
    assert infer_problem(pd.Series([0, 1, 2, 1])) == "classification"
    assert infer_problem(pd.Series([0.5, 1.25, 2.0])) == "regression"
    assert infer_problem(pd.Series(np.arange(100.0))) == "regression"  # integers, but many values
    assert infer_problem(pd.Series([0.5, 1.5]), "classification") == "classification"
    with pytest.raises(DataError, match="classification or regression"):
        infer_problem(pd.Series([1, 2]), "ranking")


def test_spec_fitted_on_train_split_and_plain(tmp_path: Path) -> None:
    import json

    task = get_task("tabular")
    bundle = task.load_data(DataConfig(source=str(make_tabular_csv(tmp_path / "t.csv")), seed=0))
    spec = bundle.meta["preprocess"]
    json.dumps(spec)  # plain types only: it travels into best.pt and ONNX metadata
    cols = {c["name"]: c for c in spec["columns"]}
    assert cols["age"]["type"] == "numeric" and cols["age"]["missing_indicator"] is True
    assert cols["city"]["type"] == "onehot" and "<missing>" in cols["city"]["levels"]
    assert cols["zip"]["type"] == "embedding" and len(cols["zip"]["levels"]) <= 40
    assert spec["num_features"] == bundle.x_train.shape[1] == bundle.meta["input_shape"][0]
    # standardisation statistics are the training split's: the train column has mean 0, std 1
    age = bundle.x_train[:, 0].numpy()
    known = bundle.x_train[:, 1].numpy() == 0  # missing indicator off
    assert abs(age[known].mean()) < 1e-5 and abs(age[known].std() - 1) < 1e-4
    assert abs(bundle.x_val[:, 0].numpy().mean()) > 1e-4  # other splits are not re-fitted
    assert bundle.meta["classes"] == ["no", "yes"] and task.metric == "accuracy"


def test_encode_records_missing_unseen_and_errors() -> None:
    import pandas as pd

    train = pd.DataFrame({"age": [20.0, 30.0, np.nan, 50.0], "city": ["Oslo", "Bergen", "Oslo", None],
                          "target": [0, 1, 0, 1]})
    spec = fit_tabular_spec(train, "target", "classification")
    assert spec["columns"][0] == {"name": "age", "type": "numeric", "mean": pytest.approx(100 / 3),
                                  "std": pytest.approx(float(np.std([20, 30, 50]))), "missing_indicator": True}
    x = encode_records([{"age": 100 / 3, "city": "Oslo"}, {"age": None, "city": "Paris", "extra": 1},
                        {"age": "41", "city": ""}], spec)
    assert x.dtype == np.float32 and x.shape == (3, 2 + 3)
    levels = spec["columns"][1]["levels"]  # ['<missing>', 'Bergen', 'Oslo']
    np.testing.assert_allclose(x[0], [0, 0, *[float(v == "Oslo") for v in levels]], atol=1e-6)
    np.testing.assert_allclose(x[1], [0, 1, 0, 0, 0], atol=1e-6)  # imputed + indicator; unseen city: zeros
    assert x[2, 2 + levels.index("<missing>")] == 1.0  # "" is a missing value
    np.testing.assert_array_equal(raw_to_model_input([{"age": 20, "city": "Oslo"}], spec),
                                  encode_records([{"age": 20.0, "city": "Oslo"}], spec))
    with pytest.raises(DataError, match=r"record 1: missing column\(s\): 'city'"):
        encode_records([{"age": 1, "city": "Oslo"}, {"age": 2}], spec)
    with pytest.raises(DataError, match="record 0: column 'age' must be a number, got 'forty'"):
        encode_records([{"age": "forty", "city": "Oslo"}], spec)
    with pytest.raises(DataError, match="expected an object"):
        encode_records([[1, 2]], spec)
    with pytest.raises(DataError, match="no inputs"):
        raw_to_model_input([], spec)


def test_skewed_non_negative_columns_are_log_scaled() -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    sales = rng.lognormal(3.0, 1.5, 400)  # counts/money: right-skewed, >= 0
    train = pd.DataFrame({"sales": sales, "temp": rng.normal(0, 1, 400), "shift": rng.lognormal(0, 1, 400) - 5,
                          "flag": rng.integers(0, 2, 400).astype(float), "target": rng.normal(size=400)})
    spec = fit_tabular_spec(train, "target", "regression")
    cols = {c["name"]: c for c in spec["columns"]}
    assert cols["sales"]["transform"] == "log"
    assert "transform" not in cols["temp"] and "transform" not in cols["shift"]  # symmetric; has negatives
    assert "transform" not in cols["flag"]  # two values: nothing to un-skew
    x = encode_records([{"sales": v, "temp": 0, "shift": 0, "flag": 0} for v in (float(np.median(sales)), 0, -3, None)],
                       spec)
    assert np.isfinite(x).all()
    assert abs(x[0, 0]) < 0.1  # the median of a log-normal sits at the log's mean
    expected = (np.sign(-3) * np.log1p(3) - cols["sales"]["mean"]) / cols["sales"]["std"]
    assert x[2, 0] == pytest.approx(expected, rel=1e-5)  # a negative value at prediction time stays defined
    assert x[3, 0] == 0.0  # missing -> the (log-scale) training mean
    enc = encode_records([{"sales": v, "temp": 0, "shift": 0, "flag": 0} for v in sales], spec)[:, 0]
    assert abs(enc.mean()) < 1e-4 and abs(enc.std() - 1) < 1e-3
    bad = {**spec, "columns": [{**cols["sales"], "transform": "exp"}]}
    with pytest.raises(DataError, match="not a valid column"):
        get_task("tabular").validate_spec(bad)


# --- regression end to end -------------------------------------------------------------------


def test_regression_end_to_end_in_target_units(tmp_path: Path) -> None:
    """A numeric target searches as regression (RMSE, minimize); the model's output is in the
    target's units, through best.pt and ONNX."""
    import optuna

    import automl
    from automl.artifacts import load_checkpoint
    from automl.study import SearchSettings, run_search
    from automl.train import predict_logits

    csv = make_tabular_csv(tmp_path / "reg.csv", n=300, regression=True)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  depth: 2\n  width: 64\n  lr: 0.01\n  batch_size: 32\n  optimizer: adamw\n")
    result = run_search(SearchSettings(task="tabular", data=str(csv), space=str(space), trials=1, epochs=15,
                                       pruner="none", sampler="random", out=str(tmp_path / "runs"), device="cpu"))
    assert (result.metric, result.direction) == ("rmse", "minimize")
    stored = optuna.load_study(study_name=result.study, storage=result.storage)
    assert stored.direction == optuna.study.StudyDirection.MINIMIZE, (
        "the study must be created with the task's direction: study.prepare_search has to call "
        "task.prepare(data_cfg) before optuna.create_study"
    )
    ckpt = load_checkpoint(result.best_pt)
    pre = ckpt["preprocess"]
    assert pre["problem"] == "regression" and pre["classes"] == [] and pre["target_std"] > 10
    model = automl.load_model(result.best_pt)
    task = get_task("tabular")
    bundle = task.load_data(DataConfig(**ckpt["data"]))
    pred = predict_logits(model, bundle.x_test).reshape(-1)
    rmse = float((pred - bundle.y_test).pow(2).mean().sqrt())
    assert rmse == pytest.approx(result.test_metric, rel=1e-5)
    assert rmse < 0.5 * float(bundle.y_test.std())  # far better than predicting the mean
    _assert_onnx_parity(model, task, bundle, tmp_path / "reg.onnx", ckpt)


def _assert_onnx_parity(model: torch.nn.Module, task, bundle, path: Path, ckpt: dict) -> None:  # noqa: ANN001
    """ONNX Runtime logits match PyTorch within 1e-4, and raw records through raw_to_model_input give
    exactly the training-pipeline tensors."""
    from automl.runtime.export import export_onnx, max_abs_diff
    from automl.runtime.onnx_meta import metadata_from_checkpoint, read_metadata

    export_onnx(model, task.example_input(bundle.meta, 2), path, metadata_from_checkpoint(ckpt))
    assert max_abs_diff(model, path, bundle.x_test) < 1e-4
    spec = read_metadata(path)["preprocess"]
    data_cfg = DataConfig(**ckpt["data"])
    frame = make_tabular_frame(*_frame_args(data_cfg))
    records = frame.drop(columns=["target"]).to_dict("records")
    x_all = torch.from_numpy(raw_to_model_input(records, spec))
    assert x_all.shape[1] == bundle.x_test.shape[1]
    # every test row appears among the raw encodings, value for value
    rows = {tuple(np.round(r, 5)) for r in x_all.numpy()}
    assert all(tuple(np.round(r, 5)) in rows for r in bundle.x_test.numpy())


def _frame_args(cfg: DataConfig) -> tuple[int, int, bool]:
    import pandas as pd

    n = len(pd.read_csv(cfg.source))
    return n, 0, cfg.source.endswith("reg.csv")


def test_onnx_and_raw_records_match_pytorch(tmp_path: Path) -> None:
    """An MLP with batch norm and an embedding exports with one float input; raw records give the
    same logits as the training tensors."""
    from automl.runtime.export import export_onnx
    from automl.runtime.onnx_meta import metadata_from_checkpoint
    from automl.runtime.ort import make_session as session

    csv = make_tabular_csv(tmp_path / "cls.csv")
    task = get_task("tabular")
    bundle = task.load_data(DataConfig(source=str(csv), seed=0))
    torch.manual_seed(0)
    model = task.build_model({"depth": 2, "width": 32, "batch_norm": True, "dropout": 0.1, "activation": "gelu"},
                             bundle.meta).eval()
    assert len(model.embeddings) == 1
    ckpt = {"task": "tabular", "preprocess": {**bundle.meta["preprocess"], "classes": bundle.meta["classes"]},
            "metrics": {"metric": "accuracy"}}
    path = export_onnx(model, task.example_input(bundle.meta, 1), tmp_path / "m.onnx", metadata_from_checkpoint(ckpt))
    sess = session(path, ["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "input" and inp.type == "tensor(float)"
    frame = make_tabular_frame()
    records = frame.drop(columns=["target"]).to_dict("records")
    x_raw = raw_to_model_input(records, bundle.meta["preprocess"])
    got = sess.run(["logits"], {"input": x_raw})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x_raw)).numpy()
    assert np.max(np.abs(got - ref)) < 1e-4
    # same answer as the PyTorch model on the training-pipeline tensors (test split rows)
    with torch.no_grad():
        test_logits = model(bundle.x_test).numpy()
    rows = {tuple(np.round(r, 5)): i for i, r in enumerate(x_raw)}
    idx = [rows[tuple(np.round(r, 5))] for r in bundle.x_test.numpy()]
    np.testing.assert_allclose(got[idx], test_logits, atol=1e-4)


# --- bad input: one clear line ---------------------------------------------------------------


def _search_cli(tmp_path: Path, *args: str):  # noqa: ANN202
    from cli import app

    return CliRunner().invoke(app, ["search", "--task", "tabular", "--trials", "1", "--epochs", "1",
                                    "--out", str(tmp_path / "runs"), "--device", "cpu", *args])


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("a,b\n1,2\n3,4\n", ["--target", "nope"], "target column 'nope' not found (columns: a, b)"),
        ("a,b\n1,5\n2,5\n3,5\n", ["--target", "b"], "target column 'b' has only one value"),
        ("a,b\n", ["--target", "b"], "the table has no rows"),
        ("", ["--target", "b"], "the file is empty"),
        ("a,b\n1,2\n", [], "say which column to predict with --target"),
        ("a,b\n1,x\n2,y\n3,x\n", ["--target", "b", "--problem", "regression"], "must be numeric"),
    ],
    ids=["missing-target", "one-value", "no-rows", "empty-file", "no-target", "non-numeric-regression"],
)
def test_bad_tables_give_one_line(tmp_path: Path, content: str, args: list[str], message: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    result = _search_cli(tmp_path, "--data", str(csv), *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output, result.stderr
    error = result.stderr[result.stderr.index("error:"):].strip()  # after any progress display
    assert message in error and len(error.splitlines()) == 1, error
