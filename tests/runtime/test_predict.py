"""``automl predict`` for every task, on ``.onnx`` and ``best.pt``; the JSON inputs of ``serve`` for
tabular records and text strings go through the same encoders and give the same numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from automl.exceptions import InputError
from automl.runtime.inference import OnnxModel, format_outputs
from automl.serve.http import http_status
from tests._onnx_helpers import digit_pngs, export_checkpoint, task_checkpoint, tiny_digits_checkpoint

TEXTS = [("a great and lovely film", "pos"), ("dull boring mess", "neg"), ("great fun, lovely", "pos"),
         ("boring, dull", "neg")]


@pytest.fixture(scope="module")
def m(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One model per task (image trained; tabular and text seeded) as best.pt and .onnx, plus inputs."""
    from sklearn.datasets import load_diabetes, load_wine

    d = tmp_path_factory.mktemp("predict")
    ns = SimpleNamespace(dir=d)
    ns.image_pt = tiny_digits_checkpoint(d / "image.pt")
    ns.pngs = digit_pngs(d / "png", [10, 11, 12, 13])
    ns.wine_pt = task_checkpoint("tabular", "wine", d / "wine.pt", {"width": 16})
    ns.diab_pt = task_checkpoint("tabular", "diabetes", d / "diab.pt", {"width": 16})
    with open(d / "texts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(TEXTS * 15)
    ns.text_pt = task_checkpoint("text", str(d / "texts.csv"), d / "text.pt", {"filters": 8, "embed_dim": 8})
    for name in ("image", "wine", "diab", "text"):
        setattr(ns, f"{name}_onnx", export_checkpoint(getattr(ns, f"{name}_pt"), d / f"{name}.onnx"))
    wine = load_wine(as_frame=True).frame.sample(5, random_state=0)
    wine.to_csv(d / "wine_with_target.csv", index=False)
    wine.drop(columns=["target"]).to_csv(d / "wine.csv", index=False)
    ns.wine_records = json.loads(wine.drop(columns=["target"]).to_json(orient="records"))
    load_diabetes(as_frame=True).frame.head(4).drop(columns=["target"]).to_csv(d / "diab.csv", index=False)
    (d / "lines.txt").write_text("a great film\n\nboring and dull\n")
    return ns


def run(*argv: str, input: str | None = None) -> dict:
    res = CliRunner().invoke(cli.app, ["predict", *argv, "--json"], input=input)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _outputs(result: dict) -> np.ndarray:
    """Per sample: the full probability vector, or the regression value."""
    rows = []
    for p in result["predictions"]:
        if "value" in p:
            rows.append([p["value"]])
        else:
            vec = np.zeros(len(p["probabilities"]))
            for q in p["probabilities"]:
                vec[q["class_index"]] = q["probability"]
            rows.append(vec)
    return np.array(rows)


CASES = {
    "image": ("image", lambda m: [str(p) for p in m.pngs], 10),
    "tabular": ("wine", lambda m: [str(m.dir / "wine.csv")], 3),
    "regression": ("diab", lambda m: [str(m.dir / "diab.csv")], 1),
    "text": ("text", lambda m: [str(m.dir / "lines.txt"), "lovely boring film"], 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_and_checkpoint_predict_the_same(m: SimpleNamespace, case: str) -> None:
    name, inputs, k = CASES[case]
    args = [*inputs(m), "--top-k", str(k)]
    onnx_res = run(str(getattr(m, f"{name}_onnx")), *args)
    pt_res = run(str(getattr(m, f"{name}_pt")), *args)
    assert onnx_res["format"] == "onnx" and pt_res["format"] == "checkpoint"
    assert [p["input"] for p in onnx_res["predictions"]] == [p["input"] for p in pt_res["predictions"]]
    a, b = _outputs(onnx_res), _outputs(pt_res)
    assert a.shape[0] == len(onnx_res["predictions"]) >= 2
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # ONNX Runtime == PyTorch
    if case != "regression":
        np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-6)
        assert [p["label"] for p in onnx_res["predictions"]] == [p["label"] for p in pt_res["predictions"]]
    else:
        assert 25 < float(np.median(a)) < 350  # de-standardised: in the target's units, not around 0


def test_image_folder_table_and_top_k(m: SimpleNamespace) -> None:
    res = run(str(m.image_onnx), str(m.dir / "png"), "--top-k", "2")
    assert [Path(p["input"]).name for p in res["predictions"]] == sorted(p.name for p in m.pngs)
    assert all(len(p["probabilities"]) == 2 for p in res["predictions"])
    assert res["sha256"] and res["provider"] == "CPUExecutionProvider"
    # the labels are right for a trained model (digits 10..13 are 0, 1, 2, 3)
    assert sum(p["label"] == Path(p["input"]).stem[-1] for p in res["predictions"]) >= 3
    table = CliRunner().invoke(cli.app, ["predict", str(m.image_onnx), *map(str, m.pngs), "--top-k", "3"],
                               env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    for p, row in zip(m.pngs, res["predictions"], strict=True):
        line = next(ln for ln in table.output.splitlines() if str(p) in ln)
        assert f" {row['label']} " in line and f"{row['probability']:.4f}" in line


def test_tabular_inputs(m: SimpleNamespace) -> None:
    plain = run(str(m.wine_onnx), str(m.dir / "wine.csv"))
    with_target = run(str(m.wine_onnx), str(m.dir / "wine_with_target.csv"))  # the target column is ignored
    inline = run(str(m.wine_onnx), json.dumps(m.wine_records[0]), json.dumps(m.wine_records[1]))
    np.testing.assert_allclose(_outputs(plain), _outputs(with_target), atol=1e-7)
    np.testing.assert_allclose(_outputs(inline), _outputs(plain)[:2], atol=1e-7)
    assert plain["predictions"][0]["input"] == "wine.csv:1"


def test_text_inputs(m: SimpleNamespace) -> None:
    res = run(str(m.text_onnx), str(m.dir / "lines.txt"), "-", "a great film", input="boring and dull\n\n")
    assert [p["input"] for p in res["predictions"]] == ["lines.txt:1", "lines.txt:3", "stdin:1", "a great film"]
    out = _outputs(res)
    np.testing.assert_allclose(out[0], out[3], atol=1e-7)  # same text, same answer
    np.testing.assert_allclose(out[1], out[2], atol=1e-7)


def test_serve_json_inputs_use_the_same_encoders(m: SimpleNamespace) -> None:
    """What POST /predict does with JSON records and strings, without HTTP: same numbers as predict."""
    wine = OnnxModel(m.wine_onnx)
    x = wine.input.from_json(m.wine_records)
    assert x.dtype == np.float32 and x.shape == (5, 13)
    served = np.array([[q["probability"] for q in sorted(p["probabilities"], key=lambda q: q["class_index"])]
                       for p in format_outputs(wine.run(x), wine.classes)])
    np.testing.assert_allclose(served, _outputs(run(str(m.wine_onnx), str(m.dir / "wine.csv"), "--top-k", "3")),
                               atol=1e-7)
    np.testing.assert_array_equal(wine.input.from_json(x.tolist()), x)  # encoded rows are accepted as they are

    text = OnnxModel(m.text_onnx)
    ids = text.input.from_json(["a great film", "boring and dull"])
    assert ids.dtype == np.int64  # the dtype comes from the session, not assumed
    np.testing.assert_array_equal(text.input.from_json(ids.tolist()), ids)
    vocab = len(text.spec["vocab"])
    bad = {
        "wrong_dtype": [[0.5] * ids.shape[1]],
        "out_of_range": [[vocab] * ids.shape[1]],
        "wrong_shape": [[1] * (ids.shape[1] + 1)],
    }
    for code, inputs in bad.items():
        with pytest.raises(InputError) as err:
            text.input.from_json(inputs)
        assert err.value.code == code and http_status(err.value) == 422
    with pytest.raises(InputError) as err:
        text.input.from_json([[-1] * ids.shape[1]])
    assert err.value.code == "out_of_range"
    with pytest.raises(InputError) as err:
        text.input.from_files([("a.png", m.pngs[0].read_bytes())])
    assert http_status(err.value) == 415
    with pytest.raises(InputError) as err:
        wine.input.from_json([{"alcohol": "very much"}])
    assert http_status(err.value) == 422


def test_regression_output_is_a_value(m: SimpleNamespace) -> None:
    res = run(str(m.diab_onnx), str(m.dir / "diab.csv"))
    assert all(set(p) == {"input", "value"} for p in res["predictions"])
    table = CliRunner().invoke(cli.app, ["predict", str(m.diab_onnx), str(m.dir / "diab.csv")])
    assert table.exit_code == 0 and "value" in table.output


def test_predict_errors_are_one_line(m: SimpleNamespace, tmp_path: Path) -> None:
    import onnx

    bare = onnx.load(str(m.image_onnx))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "model.bin").write_bytes(b"x")
    runner = CliRunner()
    cases = [
        ([str(tmp_path / "missing.onnx"), str(m.pngs[0])], "model file not found"),
        ([str(tmp_path / "model.bin"), str(m.pngs[0])], "expected an .onnx file or a best.pt"),
        ([str(tmp_path / "bare.onnx"), str(m.pngs[0])], "no automl metadata"),
        ([str(m.image_onnx), str(tmp_path / "nope.png")], "file not found"),
        ([str(m.image_onnx), str(tmp_path / "notes.png")], "not a readable image"),
        ([str(m.image_pt), str(tmp_path / "notes.png")], "not a readable image"),
        ([str(m.image_onnx), str(m.pngs[0]), "--top-k", "0"], "--top-k must be >= 1"),
        ([str(m.wine_onnx), str(tmp_path / "nope.csv")], "file not found"),
        ([str(m.text_onnx), str(tmp_path / "nope.txt")], "file not found"),
    ]
    for argv, needle in cases:
        res = runner.invoke(cli.app, ["predict", *argv])
        assert res.exit_code == 1, (argv, res.output)
        assert needle in res.output and "Traceback" not in res.output, (argv, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
