"""A tiny tabular search whose best.pt is an ensemble of its trials (issue 26): kept predictions,
best.pt loadable weights_only, the leaderboard row, --no-ensemble, the latency cap measured again,
and compress -> ONNX -> serve over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import cli
from tests._onnx_helpers import ServerProcess

#: three members of three families, small enough for seconds; the grid sampler tries each once
SPACE = """params:
  model: {type: categorical, choices: [mlp, hgb, rf]}
  depth: {type: fixed, value: 1, when: {model: [mlp]}}
  width: {type: fixed, value: 32, when: {model: [mlp]}}
  lr: {type: fixed, value: 0.01, when: {model: [mlp]}}
  batch_size: {type: fixed, value: 32, when: {model: [mlp]}}
  hgb_max_iter: {type: fixed, value: 30, when: {model: [hgb]}}
  forest_n_estimators: {type: fixed, value: 20, when: {model: [rf]}}
  forest_max_leaf_nodes: {type: fixed, value: 64, when: {model: [rf]}}
"""


def _settings(d: Path, **kw: Any) -> Any:
    from automl.study import SearchSettings

    space = d / "space.yaml"
    space.write_text(SPACE)
    return SearchSettings(task="tabular", data="diabetes", space=str(space), trials=3, epochs=5, sampler="grid",
                          pruner="none", out=str(d / "runs"), device="cpu", **{"cv": 0, **kw})


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    import automl.train
    from automl.study import run_search

    d = tmp_path_factory.mktemp("ens")
    passes: list[tuple[str, int]] = []  # (module class, rows) of every prediction pass through automl.train
    real = automl.train.predict_logits

    def counted(model: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        passes.append((type(model).__name__, len(x)))
        return real(model, x, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(automl.train, "predict_logits", counted)
        res = run_search(_settings(d))
    return SimpleNamespace(dir=d, res=res, best_pt=Path(res.best_pt), run_dir=Path(res.best_pt).parent,
                           passes=passes)


def test_search_writes_an_ensemble_best_pt(searched: SimpleNamespace) -> None:
    from automl.artifacts import model_from_checkpoint

    res, run_dir = searched.res, searched.run_dir
    info = json.loads((run_dir / "best.json").read_text())
    ens = info["ensemble"]
    assert res.params["model"] == "ensemble" and info["arch"]["family"] == "ensemble"
    assert len(ens["trials"]) >= 2 and sum(ens["weights"]) == pytest.approx(1.0, abs=1e-5)
    assert ens["val"] < ens["best_single"]["val"]  # rmse: it won on validation, or it would not be best.pt
    assert res.best_value == pytest.approx(ens["val"])
    # every member's weights and validation predictions are kept beside each other, float32 .npy
    for n in ens["trials"]:
        assert (run_dir / "trials" / f"trial-{n}.pt").is_file()
        preds = np.load(run_dir / "trials" / f"trial-{n}.val.npy", allow_pickle=False)
        assert preds.dtype == np.float32 and preds.shape == (info["metrics"]["sizes"]["val"],)
    # best.pt: plain tensors and a plain arch
    ckpt = torch.load(searched.best_pt, map_location="cpu", weights_only=True)
    model = model_from_checkpoint(ckpt)
    assert [round(w, 6) for w in model.weights.tolist()] == ens["weights"]
    assert ckpt["arch"]["trials"] == ens["trials"]
    # the leaderboard's ensemble row carries the test score best.json has (computed once, by one pass)
    row = next(r for r in res.leaderboard["rows"] if r["kind"] == "ensemble")
    assert row["used"] and row["test"] == pytest.approx(info["metrics"]["test_rmse"]) == pytest.approx(res.test_metric)
    assert res.leaderboard["rows"][0]["name"] == "ensemble"  # best validation first
    assert any(n.startswith("best.pt: ensemble of") for n in res.notes)


def test_the_ensemble_scores_the_test_split_once(searched: SimpleNamespace) -> None:
    """diabetes splits 309 / 67 / 66 rows: the ensemble passes over the 66 test rows once (best.json's
    test score, which the leaderboard repeats), and never during selection, which reads kept predictions."""
    info = json.loads((searched.run_dir / "best.json").read_text())
    test_rows = info["metrics"]["sizes"]["test"]
    assert [rows for name, rows in searched.passes if name == "Ensemble"] == [info["metrics"]["sizes"]["val"],
                                                                             test_rows], searched.passes


def test_no_ensemble_keeps_the_best_single_trial(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = CliRunner().invoke(cli.app, [
        "search", "--task", "tabular", "--data", "diabetes", "--space", str(space), "--trials", "3", "--epochs", "5",
        "--sampler", "grid", "--pruner", "none", "--out-dir", str(tmp_path / "runs"), "--device", "cpu", "--cv", "0",
        "--no-ensemble", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(next((tmp_path / "runs").glob("*/best.json")).read_text())
    assert "ensemble" not in info and info["arch"]["family"] in ("mlp", "hgb", "rf")
    assert not any(r["kind"] == "ensemble" for r in json.loads(out.stdout)["leaderboard"]["rows"])


def test_an_ensemble_over_the_latency_budget_when_measured_is_not_used(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake latency table: each network 1 ms (the sum of three members fits a 1000 ms budget), the
    assembled ensemble 5000 ms when measured again: best.pt stays the single best trial."""
    import automl.runtime.latency as latency
    from automl.models.ensemble import Ensemble
    from automl.study import run_search

    def fake(model: Any, example: Any, target: Any) -> Any:
        ms = 5000.0 if isinstance(model, Ensemble) else 1.0
        return latency.Measurement(latency_ms=ms, spread_ms=0.0, runs=1, onnx_bytes=1, params=1, macs=1)

    monkeypatch.setattr(latency, "measure", fake)
    res = run_search(_settings(tmp_path, max_latency_ms=1000.0))
    info = json.loads(Path(res.best_json).read_text())
    assert "ensemble" not in info and res.params["model"] != "ensemble"
    assert any("5000 ms, over the 1000 ms cap" in n for n in res.notes), res.notes
    row = next(r for r in res.leaderboard["rows"] if r["kind"] == "ensemble")
    assert row["used"] is False and row["test"] is None


def test_compress_reports_the_ensemble_and_serve_answers_over_http(searched: SimpleNamespace) -> None:
    """compress -> one ONNX graph (INT8 too) -> automl serve over real HTTP; the ensemble's latency is
    reported against its best member's."""
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.runtime.inference import raw_to_model_input

    out = CliRunner().invoke(cli.app, ["compress", str(searched.best_pt), "--json", "--warmup", "1", "--repeats", "3",
                                       "--calib-samples", "32"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    sec = report["ensemble"]
    assert sec["members"] >= 2 and sec["best_member"]["trial"] in json.loads(
        (searched.run_dir / "best.json").read_text())["ensemble"]["trials"]
    assert set(sec["ratio_p50"]) == {"b1", "b64"} and all(r > 0 for r in sec["ratio_p50"].values())
    names = {v["name"]: v for v in report["variants"]}
    assert names["fp32"]["verdict"] == "kept" and names["fp32"]["parity_max_abs_diff"] <= 1e-4  # outputs near 150
    assert "int8" in names and np.isfinite(names["int8"]["metric_value"])

    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame.drop(columns=["target"]).sample(5, random_state=1)
    raw = json.loads(frame.to_json(orient="records"))
    ckpt = load_checkpoint(searched.best_pt)
    with torch.no_grad():
        ref = model_from_checkpoint(ckpt)(torch.from_numpy(raw_to_model_input(raw, ckpt["preprocess"]))).numpy()[:, 0]
    onnx_path = searched.run_dir / "compressed" / "model.onnx"
    with ServerProcess(onnx_path, "--threads", "1", log=searched.dir / "server.log") as srv:
        r = httpx.post(f"{srv.url}/predict", json={"inputs": raw}, timeout=30)
        assert r.status_code == 200, r.text
        got = [p["value"] for p in r.json()["predictions"]]
    assert got == pytest.approx(ref.tolist(), rel=1e-5)


def test_cross_validated_search_selects_on_out_of_fold_predictions(tmp_path: Path) -> None:
    """--cv 3: each candidate keeps one prediction per training + validation row (309 + 67), each made by
    the fold model that did not train on it; the ensemble's validation figure is the out-of-fold one."""
    from automl.study import run_search

    res = run_search(_settings(tmp_path, cv=3))
    run_dir = Path(res.best_pt).parent
    info = json.loads((run_dir / "best.json").read_text())
    kept = sorted((run_dir / "trials").glob("trial-*.val.npy"))
    assert kept and all(np.load(p, allow_pickle=False).shape == (309 + 67,) for p in kept)
    assert info["arch"]["family"] == "ensemble" and info["metrics"]["cv_folds"] == 3
    ens = info["ensemble"]
    assert info["metrics"]["val_rmse"] == pytest.approx(ens["val"]) and ens["val"] < ens["best_single"]["val"]
    assert any("OOF rmse" in n for n in res.notes)
