"""``automl compress`` end to end on the digits best.pt of the shared search fixture.

One CLI run (prune ratio 0.5, fine-tune, static INT8) feeds every test here; each test re-measures
what it asserts from the files instead of trusting the report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

MIN_PARAMS = 40_000  # below this the ~9 KB of graph and scales dominate and INT8 cannot reach 0.35x


def _wide_digits_checkpoint(path: Path) -> Path:
    """A width-48 digits CNN trained for 3 epochs: used only when the search fixture found a model too
    narrow for the INT8 size check (the search space starts at width 16, a few hundred parameters)."""
    from automl.artifacts import make_checkpoint, save_checkpoint
    from automl.tasks import DataConfig, get_task
    from automl.train import evaluate, fit, train_config_from_params

    task = get_task("image")
    cfg = DataConfig(source="digits")
    bundle = task.load_data(cfg)
    params = {"depth": 2, "width": 48, "lr": 0.005, "batch_size": 64, "optimizer": "adamw"}
    arch = task.arch_from_params(params, bundle.meta)
    torch.manual_seed(0)
    model = task.build_model(params, bundle.meta)
    fit(model, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val,
        train_config_from_params(params, epochs=3, device="cpu"), task.loss_fn(), task.metric_fn())
    _, acc = evaluate(model, bundle.x_test, bundle.y_test, task.loss_fn(), task.metric_fn())
    ckpt = make_checkpoint(task="image", arch=arch, model=model, preprocess={**bundle.meta["preprocess"], **{
        k: v for k, v in bundle.meta.items() if k != "preprocess"}}, data=cfg.to_dict(),
        metrics={"metric": "accuracy", "test_accuracy": acc}, params=params)
    return save_checkpoint(path, ckpt)


@pytest.fixture(scope="module")
def run(digits_best_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``automl compress best.pt --json --prune-ratio 0.5`` once; returns paths, exit code and JSON."""
    from typer.testing import CliRunner

    import cli
    from automl.artifacts import load_checkpoint

    root = tmp_path_factory.mktemp("compress")
    best = root / "best.pt"
    shutil.copy(digits_best_pt, best)
    n_params = sum(v.numel() for k, v in load_checkpoint(best)["state_dict"].items() if "running" not in k)
    if n_params < MIN_PARAMS:
        _wide_digits_checkpoint(best)
    args = ["compress", str(best), "--json", "--prune-ratio", "0.5", "--finetune-epochs", "3",
            "--calib-samples", "128", "--warmup", "1", "--repeats", "5", "--threads", "1"]
    res = CliRunner().invoke(cli.app, args)
    return {"best": best, "out": root / "compressed", "code": res.exit_code, "stdout": res.stdout,
            "stderr": res.stderr, "exception": res.exception}


@pytest.fixture(scope="module")
def report(run: dict[str, Any]) -> dict[str, Any]:
    assert run["code"] == 0, (run["stderr"], run["exception"])
    return json.loads(run["stdout"])


@pytest.fixture(scope="module")
def data(run: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(checkpoint, task, bundle) of the compressed best.pt."""
    from automl.artifacts import load_checkpoint
    from automl.tasks import DataConfig, get_task

    ckpt = load_checkpoint(run["best"])
    task = get_task(ckpt["task"])
    return ckpt, task, task.load_data(DataConfig(**ckpt["data"]))


def _row(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in report["variants"] if v["name"] == name)


def _acc(onnx_path: str | Path, bundle: Any) -> float:
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits

    logits = ort_logits(session(onnx_path, ["CPUExecutionProvider"]), bundle.x_test)
    return float((logits.argmax(1) == bundle.y_test.numpy()).mean())


def test_cli_writes_every_artifact_and_one_json_object(run: dict[str, Any], report: dict[str, Any]) -> None:
    from automl.runtime.ort import default_providers

    out = run["out"]
    for name in ("model.onnx", "pruned.pt", "model.pruned.onnx", "model.int8.onnx", "compress_report.json"):
        assert (out / name).is_file(), name
    assert run["stdout"].count("\n") == 1  # exactly one JSON line on stdout
    on_disk = json.loads((out / "compress_report.json").read_text())
    assert on_disk["variants"] == report["variants"]
    assert Path(report["recommended"]).is_file()
    assert sum(v["recommended"] for v in report["variants"]) == 1
    for v in report["variants"]:
        assert v["size_bytes"] == Path(v["path"]).stat().st_size
        assert 0.9 <= v["accuracy"] <= 1.0
        for b in ("b1", "b64"):
            assert 0 < v["latency_ms"][b]["p50"] <= v["latency_ms"][b]["p95"]
        assert v["provider"] == default_providers()[0]  # CUDA first where a GPU is present
        assert v["verdict"] in ("kept", "rejected", "not faster") and v["reason"]
    assert report["baseline"]["latency_ms"]["b64"]["p50"] > 0
    assert report["quantization"]["int8_method"] == "static"
    assert report["quantization"]["calib_samples"] == 128 and report["quantization"]["calib_batches"] == 4
    print("compress stage seconds:", report["stage_seconds"])


def test_fp32_onnx_matches_pytorch(report: dict[str, Any], data: tuple[Any, Any, Any]) -> None:
    import onnx

    from automl.artifacts import model_from_checkpoint
    from automl.runtime.onnx_meta import read_metadata
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits

    ckpt, _, bundle = data
    path = _row(report, "fp32")["path"]
    proto = onnx.load(path)
    assert proto.opset_import[0].version >= 17
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
    meta = read_metadata(path)
    assert meta["task"] == "image" and meta["classes"] == [str(i) for i in range(10)] and meta["variant"] == "fp32"
    model = model_from_checkpoint(ckpt)
    with torch.no_grad():
        ref = model(bundle.x_test).numpy()
    got = ort_logits(session(path, ["CPUExecutionProvider"]), bundle.x_test, batch=97)  # odd batch: dynamic axis
    diff = float(np.abs(ref - got).max())
    assert diff <= 1e-4, diff
    assert _row(report, "fp32")["parity_max_abs_diff"] <= 1e-4


def test_int8_keeps_accuracy_and_is_a_third_of_the_size(report: dict[str, Any], data: tuple[Any, Any, Any]) -> None:
    import onnx
    from onnx import numpy_helper

    _, _, bundle = data
    fp32, int8 = _row(report, "fp32"), _row(report, "int8")
    acc32, acc8 = _acc(fp32["path"], bundle), _acc(int8["path"], bundle)
    assert abs(acc32 - acc8) * 100 <= 1.0, (acc32, acc8)
    assert int8["accuracy"] == pytest.approx(acc8, abs=1e-6)
    ratio = Path(int8["path"]).stat().st_size / Path(fp32["path"]).stat().st_size
    assert ratio <= 0.35, ratio
    proto = onnx.load(int8["path"])
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    int8_weights = [numpy_helper.to_array(t) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8_weights and max(w.size for w in int8_weights) > 1000
    scales = [numpy_helper.to_array(t) for t in proto.graph.initializer if t.name.endswith("_scale")]
    assert max(s.size for s in scales) > 1  # per-channel weight scales


def test_pruning_half_the_channels_cuts_macs_and_keeps_accuracy(report: dict[str, Any],
                                                                data: tuple[Any, Any, Any], run: dict) -> None:
    from automl.models import build_from_arch
    from automl.train import evaluate
    from compress.prune import count_macs_params

    ckpt, task, bundle = data
    pruned = torch.load(run["out"] / "pruned.pt", map_location="cpu", weights_only=True)
    assert pruned["format_version"] == ckpt["format_version"] and pruned["data"] == ckpt["data"]
    widths, new_widths = ckpt["arch"]["widths"], pruned["arch"]["widths"]
    assert all(n < w for n, w in zip(new_widths, widths, strict=True)), (widths, new_widths)
    model = build_from_arch(pruned["arch"])
    model.load_state_dict(pruned["state_dict"], strict=True)
    original = build_from_arch(ckpt["arch"])
    original.load_state_dict(ckpt["state_dict"])
    x1 = task.example_input(bundle.meta, 1)
    macs0, params0 = count_macs_params(original, x1)
    macs1, params1 = count_macs_params(model, x1)
    assert macs0 / macs1 >= 1.8 and params1 < params0
    assert report["prune"]["macs_reduction"] == pytest.approx(macs0 / macs1, rel=1e-3)
    assert report["prune"]["macs_before"] == macs0 and report["prune"]["params_after"] == params1
    _, acc0 = evaluate(original, bundle.x_test, bundle.y_test, task.loss_fn(), task.metric_fn())
    _, acc1 = evaluate(model.eval(), bundle.x_test, bundle.y_test, task.loss_fn(), task.metric_fn())
    assert (acc0 - acc1) * 100 <= 1.5, (acc0, acc1)
    assert report["prune"]["finetune"]["epochs"] == 3
    assert _acc(_row(report, "pruned")["path"], bundle) == pytest.approx(acc1, abs=1e-6)


def test_gate_rejects_lossy_and_marks_slow_quantized_variants() -> None:
    from compress.verdict import Variant, gate, metric_drop, recommend

    def v(name: str, kind: str, acc: float, p50: float) -> Variant:
        lat = {"b1": {"p50": p50 / 10, "p95": p50 / 5}, "b64": {"p50": p50, "p95": p50 * 2}}
        return Variant(name, kind, "fp32", f"/x/{name}.onnx", size_bytes=100, metric_value=acc, latency_ms=lat)

    rows = [v("fp32", "fp32", 0.95, 2.0), v("pruned", "fp32", 0.93, 1.0), v("int8", "int8", 0.948, 2.5),
            v("fp16", "fp16", 0.95, 1.5)]
    rows[0].parity_max_abs_diff = 1e-6
    gate(rows, 0.95, "maximize", "accuracy", 1.0, 1e-4, {"b64": {"p50": 4.0}})
    verdicts = {r.name: r.verdict for r in rows}
    assert verdicts == {"fp32": "kept", "pruned": "rejected", "int8": "not faster", "fp16": "kept"}
    assert "2.00 accuracy points" in rows[1].reason
    assert rows[3].speedup_vs_fp32 == pytest.approx(2.0 / 1.5, rel=1e-3) and rows[3].speedup_vs_torch == 2.667
    assert recommend(rows).name == "fp16"
    assert metric_drop(0.5, 0.55, "minimize", "rmse") == pytest.approx(10.0)  # an error: percent worse
