"""Compression-aware scoring (issue 15, ``automl search --score int8``): each trained trial is also
quantized, its value is the quantized model's validation metric, both figures are recorded, the
quantized latency counts against a budget, and bad options are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

import automl.runtime.latency as lat
from automl.exceptions import ConfigError
from automl.runtime import int8
from automl.runtime.latency import LatencyTarget
from automl.study import SearchSettings, run_search

AUTOML = [sys.executable, "-c", "import cli; cli.main()"]

SPACE = (
    "params:\n"
    "  depth: {type: int, low: 1, high: 2}\n"
    "  width: {type: categorical, choices: [8, 16]}\n"
    "  optimizer: {type: fixed, value: adamw}\n"
    "  lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}\n"
    "  batch_size: {type: fixed, value: 64}\n"
)


def _cnn() -> tuple[torch.nn.Module, torch.Tensor]:
    from automl.tasks import get_task

    meta = {"input_shape": [1, 8, 8], "num_classes": 10}
    torch.manual_seed(0)
    model = get_task("image").build_model({"depth": 2, "width": 16}, meta).eval()
    return model, torch.randn(300, 1, 8, 8)


def test_quantized_graph_is_int8_and_close_to_fp32() -> None:
    import onnx
    import onnxruntime as ort

    model, x = _cnn()
    assert int8.method_for(model, x) == "static"  # convolutions hold most MACs: compress's static QDQ
    blob = int8.quantized(model, x, "int8", x)
    ops = {n.op_type for n in onnx.load_from_string(blob).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    q = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(["logits"], {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    diff = float(np.max(np.abs(q - ref)))
    assert 0 < diff < 0.5 * float(np.max(np.abs(ref))), diff  # quantized for real, and still the same network
    agree = float((q.argmax(1) == ref.argmax(1)).mean())
    assert agree > 0.8, agree


def test_bad_score_values() -> None:
    with pytest.raises(ConfigError, match=r"unknown --score 'int4' \(choose from: none, int8, fp16\)"):
        SearchSettings(score="int4")
    with pytest.raises(ConfigError, match="--score fp16 needs a GPU"):
        int8.check_score("fp16", gpu=False)
    int8.check_score("fp16", gpu=True)


@pytest.mark.parametrize("value", ["int4", "fp16"])
def test_cli_bad_score_is_one_line(tmp_path: Path, value: str) -> None:
    if value == "fp16":
        from automl.runtime.ort import gpu_present

        if gpu_present():
            pytest.skip("a GPU is present: --score fp16 is allowed")
    proc = subprocess.run([*AUTOML, "search", "--score", value, "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=180)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ") and "--score" in lines[0]


def test_search_scored_int8_with_a_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = lat.measure

    def counted(model: torch.nn.Module, example: torch.Tensor, target: LatencyTarget) -> lat.Measurement:
        calls.append(1)
        return real(model, example, target)

    monkeypatch.setattr(lat, "measure", counted)
    # What each trial's quantized graph scored (ONNX Runtime on the validation split), and whether that
    # graph was quantized: the trial's value must be this figure. Recorded rather than inferred from
    # val_int8 != val_fp32, which fails when 1-epoch trials stay at chance (a slow or loaded machine).
    scored: list[tuple[bool, float]] = []
    TAG = 0.99  # noqa: N806
    real_metric = int8.ort_metric

    def spied(blob: bytes, *args: object, **kw: object) -> float:
        import onnx

        value = real_metric(blob, *args, **kw)
        ops = {n.op_type for n in onnx.load_from_string(blob).graph.node}
        scored.append(({"QuantizeLinear", "DequantizeLinear"} <= ops or "MatMulInteger" in ops, value))
        return value * TAG  # marked, so the figure the trial keeps can be told from the FP32 one

    monkeypatch.setattr(int8, "ort_metric", spied)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    # ensemble=False: the timings of the trials' networks are counted below, not an ensemble's at the end
    kw = dict(task="image", space=str(space), epochs=1, pruner="none", out=str(tmp_path), study="q", device="cpu",
              sampler="random", seed=1, max_latency_ms=1000.0, ensemble=False)
    result = run_search(SearchSettings(trials=3, score="int8", **kw))
    study = optuna.load_study(study_name="q", storage=result.storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    for t in done:
        a = t.user_attrs
        assert a["score"] == "int8" and t.value == pytest.approx(a["val_int8"], abs=1e-6)
        assert 0.0 < a["val_int8"] <= 1.0 and 0.0 < a["val_fp32"] <= 1.0
        assert abs(a["val_int8"] - a["val_fp32"]) < 0.2  # the same network, quantized
        # the budget judged the INT8 graph; the FP32 timing is kept beside it
        assert a["latency_ms"] == a["latency_ms_int8"] and a["latency_ms_fp32"] > 0
        # (the QDQ nodes and scales outweigh the int8 weights of networks this small: both are kept)
        assert a["onnx_bytes"] == a["onnx_bytes_int8"] > 0 and a["onnx_bytes_fp32"] > 0
    # the quantized model's figure is the trial's value, not the FP32 one: one INT8 graph scored per
    # trial, in trial order, and its figure is what the trial recorded and returned
    assert len(scored) == 3 and all(q for q, _ in scored), scored
    assert [t.value for t in sorted(done, key=lambda t: t.number)] == pytest.approx([v * TAG for _, v in scored],
                                                                                    abs=1e-6)
    assert all(t.value != t.user_attrs["val_fp32"] for t in done if t.user_attrs["val_fp32"] > 0)
    keys = [k for k in study.user_attrs if k.startswith(lat.CACHE_PREFIX)]
    archs = {(t.params["depth"], t.params["width"]) for t in done}
    assert len(keys) == 2 * len(archs) == 2 * len(calls)  # FP32 and INT8 cached under different keys
    out = result.to_json()
    assert out["score"]["mode"] == "int8" and out["score"]["n_scored"] == 3
    assert out["best_value"] == pytest.approx(out["score"]["best"]["val_int8"], abs=1e-6)
    assert any(n.startswith("--score int8: 3 of 3 completed trials") for n in out["notes"])

    from automl.study.trials import list_trials, trials_summary

    rows = list_trials(study)
    js = [r.to_json() for r in rows]
    assert all(r["score"]["val_int8"] == pytest.approx(r["value"], abs=1e-6) and "val_fp32" in r["score"]
               and "latency_ms_int8" in r["score"] for r in js)
    from rich.console import Console

    from automl.ui.trials import print_trials

    summary = trials_summary(study, rows)
    for width in (200, 80):  # the table, and the narrow (plain) view
        console = Console(width=width, record=True)
        print_trials(summary, console)
        text = console.export_text()
        assert text.count("(int8; fp32 ") == 3, text

    with pytest.raises(ConfigError, match="was created with --score int8, not --score none"):
        run_search(SearchSettings(trials=1, **kw))

    import time

    from automl.study._settings import WorkerSettings
    from automl.study._worker import open_worker_run

    # automl worker and every --jobs child read the mode from the study
    worker = open_worker_run(WorkerSettings(storage=result.storage, study="q", out=str(tmp_path)), time.monotonic())
    assert worker.score == "int8"


def test_unquantizable_family_keeps_its_fp32_value(tmp_path: Path) -> None:
    """Tabular (wine): the first trial is the default gradient-boosted trees (not quantizable: FP32 value
    kept, with a note), the fifth an MLP (dynamic INT8, as compress makes it; CatBoost and the two forests
    between)."""
    result = run_search(SearchSettings(task="tabular", data="wine", trials=5, epochs=1, pruner="none", cv=0,
                                       out=str(tmp_path), study="t", device="cpu", score="int8"))
    study = optuna.load_study(study_name="t", storage=result.storage)
    by_model = {t.params["model"]: t for t in study.trials if t.params}  # (later firsts wait in the queue)
    hgb, mlp = by_model["hgb"], by_model["mlp"]
    assert "val_int8" not in hgb.user_attrs and "FP32 value kept (hgb:" in hgb.user_attrs["score_note"]
    assert "FP32 value kept (rf:" in by_model["rf"].user_attrs["score_note"]
    assert mlp.state == optuna.trial.TrialState.COMPLETE
    assert mlp.value == pytest.approx(mlp.user_attrs["val_int8"], abs=1e-6) and "val_fp32" in mlp.user_attrs


def test_fp16_graph_keeps_float32_inputs_and_outputs() -> None:
    """--score fp16 runs only on a GPU; the conversion itself is checked here."""
    import onnx

    model, x = _cnn()
    proto = onnx.load_from_string(int8.quantized(model, x, "fp16", None))
    f16 = onnx.TensorProto.FLOAT16
    weights = [t for t in proto.graph.initializer if t.dims and len(t.dims) > 1]
    assert weights and all(t.data_type == f16 for t in weights)
    io = [*proto.graph.input, *proto.graph.output]
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
