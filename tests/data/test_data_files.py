"""Column types and problem inference on synthetic tables, and compressed / zipped table files for
the tabular and text tasks (issue 13, points 2 and 3)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl.data.files import strip_table_suffixes, table_file
from automl.data.tabular import column_kinds, encode_frame, fit_tabular_spec, infer_problem, read_table
from automl.data.text import read_text_source
from automl.exceptions import DataError


def test_26_classes_coded_0_to_25_are_a_classification() -> None:
    y = pd.Series(np.arange(26).repeat(10))
    assert infer_problem(y) == "classification"
    assert infer_problem(pd.Series(np.arange(1, 27).repeat(5))) == "classification"  # 1..K too
    assert infer_problem(pd.Series(np.arange(26).repeat(2))) == "regression"  # too few rows a value for classes
    # Integers that are not codes 0..K-1 (gaps, an offset, many values) stay a regression.
    assert infer_problem(pd.Series(np.arange(0, 60, 2))) == "regression"
    assert infer_problem(pd.Series(np.arange(100, 140))) == "regression"
    assert infer_problem(pd.Series(np.arange(300))) == "regression"
    assert infer_problem(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert infer_problem(pd.Series(np.arange(26)), override="regression") == "regression"


def _coded_frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "symbol": rng.integers(0, 4, n),          # codes 0..3: categorical
        "flag": rng.integers(0, 2, n),            # 0/1: numeric either way
        "amount": rng.normal(size=n),             # float: numeric
        "count": rng.integers(0, 500, n),         # many integers: a quantity
        "city": rng.choice(["a", "b", "c"], n),   # text: categorical
        "target": rng.integers(0, 2, n),
    })


def test_integer_codes_are_one_hot_encoded() -> None:
    frame = _coded_frame()
    kinds = column_kinds(frame, "target")
    assert kinds == {"symbol": "categorical", "flag": "numeric", "amount": "numeric", "count": "numeric",
                     "city": "categorical"}
    spec = fit_tabular_spec(frame, "target", "classification", kinds)
    symbol = next(c for c in spec["columns"] if c["name"] == "symbol")
    assert symbol["type"] == "onehot" and symbol["levels"] == ["0", "1", "2", "3"]
    x = encode_frame(frame, spec)
    # The symbol block is one-hot: each row has exactly one 1 among its four columns, at its code.
    start = 0
    for col in spec["columns"]:
        if col["name"] == "symbol":
            break
        start += 1 + int(col.get("missing_indicator", False)) if col["type"] == "numeric" else len(col["levels"])
    block = x[:, start:start + 4]
    assert np.array_equal(block.argmax(1), frame["symbol"].to_numpy()) and np.all(block.sum(1) == 1)


def test_overrides_and_their_errors() -> None:
    frame = _coded_frame()
    kinds = column_kinds(frame, "target", categorical=("count",), numeric=("symbol",))
    assert kinds["count"] == "categorical" and kinds["symbol"] == "numeric"
    with pytest.raises(DataError, match="--categorical nope: is not a column"):
        column_kinds(frame, "target", categorical=("nope",))
    with pytest.raises(DataError, match="--numeric city: the column holds text"):
        column_kinds(frame, "target", numeric=("city",))
    with pytest.raises(DataError, match="both --categorical and --numeric"):
        column_kinds(frame, "target", categorical=("amount",), numeric=("amount",))


TABLE = "a,b,target\n1,x,0\n2,y,1\n3,x,0\n4,y,1\n"
TEXTS = "text\tlabel\ngood film\tpos\nbad film\tneg\nfine\tpos\n"


def _write(path: Path, text: str) -> Path:
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix)
    if path.suffix == ".zip":
        inner = path.with_suffix("").name
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(inner, text)
    elif opener:
        with opener(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["t.csv.gz", "t.csv.bz2", "t.csv.xz", "t.csv.zip", "t.tsv.gz"])
def test_compressed_tables_load(tmp_path: Path, name: str) -> None:
    text = TABLE.replace(",", "\t") if ".tsv" in name else TABLE
    frame, _, _ = read_table(str(_write(tmp_path / name, text)))
    assert list(frame.columns) == ["a", "b", "target"] and frame["a"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("name", ["r.tsv.gz", "r.tsv.bz2", "r.tsv.zip", "r.csv.gz"])
def test_compressed_texts_load(tmp_path: Path, name: str) -> None:
    text = TEXTS.replace("\t", ",") if ".csv" in name else TEXTS
    texts, labels = read_text_source(str(_write(tmp_path / name, text)))
    assert texts == ["good film", "bad film", "fine"] and labels == ["pos", "neg", "pos"]


def test_zip_of_two_tables_and_unknown_types_are_refused(tmp_path: Path) -> None:
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.csv", TABLE)
        zf.writestr("b.csv", TABLE)
    with pytest.raises(DataError, match="exactly one table, found 2 \\(a.csv, b.csv\\)"):
        read_table(str(two))
    with pytest.raises(DataError, match="unsupported file type '.json.gz'"):
        table_file(_write(tmp_path / "x.json.gz", "{}"), "x.json.gz")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .zip"):
        read_table(str(bad))
    assert strip_table_suffixes("reviews.tsv.gz") == "reviews" and strip_table_suffixes("t.csv.zip") == "t"


def test_search_states_inferred_types_and_takes_overrides(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cli import app

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"sym": rng.integers(0, 4, 300), "x": rng.normal(size=300)})
    frame["target"] = frame["sym"] * 6 + (frame["x"] > 0)  # codes with gaps: 0, 1, 6, 7, 12, …
    frame["target"] = frame["target"].rank(method="dense").astype(int) - 1
    data = tmp_path / "coded.csv.gz"
    frame.to_csv(data, index=False)
    base = ["search", "--task", "tabular", "--data", str(data), "--trials", "1", "--epochs", "1",
            "--out-dir", str(tmp_path / "runs"), "--device", "cpu", "--json"]
    res = CliRunner().invoke(app, base)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["metric"] == "accuracy" and out["study"] == "tabular-coded"
    (note,) = [n for n in out["notes"] if n.startswith("target 'target'")]
    assert "classification of 8 classes" in note and "1 categorical column(s): sym" in note
    res = CliRunner().invoke(app, [*base, "--study", "forced", "--numeric", "sym"])
    assert res.exit_code == 0, res.output
    assert "2 numeric and 0 categorical" in " ".join(json.loads(res.stdout)["notes"])
    res = CliRunner().invoke(app, [*base, "--study", "bad", "--categorical", "nope"])
    assert res.exit_code == 1 and "--categorical nope: is not a column" in res.stderr


# --- limits on what a data file may cost (issue 23, item 7); low limits, small hostile files ------------


def _limits(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name in ("AUTOML_MAX_DATA_BYTES", "AUTOML_MAX_DATA_RATIO", "AUTOML_MAX_LINE_BYTES",
                 "AUTOML_MAX_FIELD_BYTES", "AUTOML_MAX_COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"AUTOML_MAX_{name}", value)


def _refused(call: object, *needles: str) -> str:
    with pytest.raises(DataError) as err:
        call()  # type: ignore[operator]
    message = str(err.value)
    assert all(n in message for n in needles), message
    assert "\n" not in message
    return message


def test_zip_bomb_is_refused_from_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("t.csv", "a,b\n" + "0,0\n" * 1_000_000)  # 4 MB of CSV in ~10 KB
    _limits(monkeypatch, DATA_BYTES="1M")
    _refused(lambda: read_table(str(bomb)), "--data", "bomb.zip", "3.815 MiB once unpacked", "1 MiB",
             "AUTOML_MAX_DATA_BYTES")
    _refused(lambda: read_text_source(str(bomb)), "bomb.zip", "AUTOML_MAX_DATA_BYTES")
    _limits(monkeypatch)
    assert len(read_table(str(bomb))[0]) == 1_000_000  # under the default limits it reads
    _limits(monkeypatch, DATA_RATIO="50")
    monkeypatch.setattr("automl.data.bounds.RATIO_FLOOR", 1 << 20)  # the 64 MiB floor, scaled down
    _refused(lambda: read_table(str(bomb)), "bomb.zip", "times its size", "over the limit of 50",
             "AUTOML_MAX_DATA_RATIO")


@pytest.mark.parametrize("name", ["bomb.csv.gz", "bomb.csv.xz", "bomb.csv.bz2"])
def test_compressed_stream_stops_at_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = _write(tmp_path / name, "a,b\n" + "0,0\n" * 1_000_000)
    _limits(monkeypatch, DATA_BYTES="1M")
    _refused(lambda: read_table(str(path)), name, "more than 1 MiB once decompressed", "AUTOML_MAX_DATA_BYTES")
    _limits(monkeypatch, DATA_RATIO="20")
    monkeypatch.setattr("automl.data.bounds.RATIO_FLOOR", 1 << 20)
    _refused(lambda: read_table(str(path)), name, "times its compressed size", "AUTOML_MAX_DATA_RATIO")


def test_long_line_long_field_and_wide_header_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _limits(monkeypatch, LINE_BYTES="64K", FIELD_BYTES="16K", COLUMNS="100")
    line = tmp_path / "line.csv"
    line.write_text("a,b,target\n" + ",".join(["1"] * 40_000) + "\n")  # 80 KB on one line of short fields
    _refused(lambda: read_table(str(line)), "line.csv", "has a line over the limit of 64 KiB", "AUTOML_MAX_LINE_BYTES")
    field = tmp_path / "field.csv"
    field.write_text("a,b,target\n1,x,0\n2," + "y" * 20_000 + ",1\n")
    _refused(lambda: read_table(str(field)), "field.csv", "has a field over the limit of 16 KiB",
             "AUTOML_MAX_FIELD_BYTES")
    quoted = tmp_path / "quoted.csv"  # commas inside quotes hide the field from the stream: the parsed cell is checked
    quoted.write_text('text,label\n"' + "so, " * 5_000 + '",pos\nfine,neg\n')
    _refused(lambda: read_text_source(str(quoted)), "quoted.csv", "column 'text', row 0", "AUTOML_MAX_FIELD_BYTES")
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(200)) + "\n" + ",".join(["0"] * 200) + "\n")
    _refused(lambda: read_table(str(wide)), "wide.csv", "header line has 200 columns", "limit of 100",
             "AUTOML_MAX_COLUMNS")
    unfinished = tmp_path / "unfinished.csv"  # a header that never ends is refused while it streams
    unfinished.write_text(",".join(f"c{i}" for i in range(5_000)))
    _refused(lambda: read_table(str(unfinished)), "has at least", "AUTOML_MAX_COLUMNS")
    _limits(monkeypatch, CELLS="1000")
    cells = _write(tmp_path / "cells.csv.gz", "a,target\n" + "1,0\n" * 600)
    _refused(lambda: read_table(str(cells)), "cells.csv.gz", "601 lines x 2 columns = 1,202 cells", "limit of 1,000",
             "AUTOML_MAX_CELLS")
    _limits(monkeypatch, COLUMNS="100")
    frame = pd.DataFrame({f"c{i}": [0.0, 1.0] for i in range(150)})
    frame.to_parquet(tmp_path / "wide.parquet")
    _refused(lambda: read_table(str(tmp_path / "wide.parquet")), "wide.parquet", "has 150 columns",
             "AUTOML_MAX_COLUMNS")
    _limits(monkeypatch)
    assert read_table(str(field))[0].shape == (2, 3) and read_table(str(wide))[0].shape == (1, 200)


def test_text_folder_and_predict_tables_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from automl.data.preprocess import read_input_table

    for label, text in (("pos", "great"), ("neg", "awful " * 5_000)):
        (tmp_path / "texts" / label).mkdir(parents=True)
        (tmp_path / "texts" / label / "a.txt").write_text(text)
    _limits(monkeypatch, FIELD_BYTES="16K")
    _refused(lambda: read_text_source(str(tmp_path / "texts")), "a.txt", "one text of 29.3 KiB", "16 KiB",
             "AUTOML_MAX_FIELD_BYTES")
    _limits(monkeypatch, DATA_BYTES="20K")
    _refused(lambda: read_text_source(str(tmp_path / "texts")), "hold more than 20 KiB", "AUTOML_MAX_DATA_BYTES")
    inputs = tmp_path / "inputs.csv"
    inputs.write_text("a,b\n" + "1,2\n" * 10_000)
    _refused(lambda: read_input_table(inputs), "inputs.csv", "holds 39.07 KiB", "AUTOML_MAX_DATA_BYTES")
    _limits(monkeypatch)
    assert read_input_table(inputs).shape == (10_000, 2)


def test_limit_variables_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from automl.data.bounds import DataLimits
    from automl.exceptions import ConfigError

    limits = DataLimits.from_env({"AUTOML_MAX_DATA_BYTES": "8G", "AUTOML_MAX_LINE_BYTES": "512KiB",
                                  "AUTOML_MAX_DATA_RATIO": "1e3", "AUTOML_MAX_COLUMNS": "20000"})
    assert (limits.max_bytes, limits.max_line_bytes, limits.max_ratio, limits.max_columns) == (
        8 << 30, 512 << 10, 1000.0, 20_000)
    assert DataLimits.from_env({}) == DataLimits()
    for name, bad in (("AUTOML_MAX_DATA_BYTES", "lots"), ("AUTOML_MAX_COLUMNS", "-5"),
                      ("AUTOML_MAX_DATA_RATIO", "0"), ("AUTOML_MAX_FIELD_BYTES", "1.5G")):
        with pytest.raises(ConfigError, match=name):
            DataLimits.from_env({name: bad})


def test_search_names_the_file_and_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli import app

    data = _write(tmp_path / "big.csv.gz", "x,target\n" + "1,0\n2,1\n" * 200_000)
    _limits(monkeypatch, DATA_BYTES="1M")
    res = CliRunner().invoke(app, ["search", "--task", "tabular", "--data", str(data), "--trials", "1",
                                   "--out-dir", str(tmp_path / "runs"), "--device", "cpu"])
    assert res.exit_code == 1, res.output
    assert "big.csv.gz" in res.stderr and "AUTOML_MAX_DATA_BYTES" in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
