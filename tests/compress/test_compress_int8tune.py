"""Accuracy-aware INT8 (issue 16): calibration chosen on validation, per-layer sensitivity and FP32
fallback. The model is a digits CNN made quantization-hostile on purpose: one channel of the first
block's output is scaled up 10^4 times (and the next conv's weights for it scaled down as much), so
the network computes the same function but that activation tensor's range is huge. Per-tensor uint8
activations then round every other channel to zero: plain INT8 collapses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

SCALE = 1e4
MAX_DROP = 1.0
HOSTILE = "/features/features.0/Conv"  # the layer whose output range is huge
CONSUMER = "/features/features.4/Conv"  # the layer reading that output


def _hostile_checkpoint(path: Path) -> Path:
    from automl.artifacts import make_checkpoint, save_checkpoint
    from automl.tasks import DataConfig, get_task
    from automl.train import evaluate, fit, train_config_from_params

    task = get_task("image")
    cfg = DataConfig(source="digits")
    bundle = task.load_data(cfg)
    params = {"depth": 2, "width": 16, "lr": 0.01, "batch_size": 64, "optimizer": "adamw"}
    arch = task.arch_from_params(params, bundle.meta)
    torch.manual_seed(0)
    model = task.build_model(params, bundle.meta)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: one thread is fastest, and much faster on a busy machine
    try:
        fit(model, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val,
            train_config_from_params(params, epochs=3), task.loss_fn(), task.metric_fn())
    finally:
        torch.set_num_threads(threads)
    model.eval()
    _, before = evaluate(model, bundle.x_test, bundle.y_test, task.loss_fn(), task.metric_fn())
    with torch.no_grad():  # ReLU and max-pool commute with a positive scale: same function, huge range
        bn, conv2 = model.features[1], model.features[4]
        bn.weight[0] *= SCALE
        bn.bias[0] *= SCALE
        conv2.weight[:, 0] /= SCALE
    _, acc = evaluate(model, bundle.x_test, bundle.y_test, task.loss_fn(), task.metric_fn())
    assert abs(acc - before) < 0.005 and acc > 0.9, (before, acc)
    ckpt = make_checkpoint(task="image", arch=arch, model=model, preprocess={**bundle.meta["preprocess"], **{
        k: v for k, v in bundle.meta.items() if k != "preprocess"}}, data=cfg.to_dict(),
        metrics={"metric": "accuracy", "test_accuracy": acc}, params=params)
    return save_checkpoint(path, ckpt)


def _acc(path: str | Path, bundle: Any) -> float:
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits

    logits = ort_logits(session(path, ["CPUExecutionProvider"]), bundle.x_test)
    return float((logits.argmax(1) == bundle.y_test.numpy()).mean())


def _weight_is_quantized(proto: Any, node_name: str) -> bool:
    """Whether the node's weight input comes out of a DequantizeLinear (INT8) or is a float initializer."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = next(n for n in proto.graph.node if n.name == node_name)
    src = producers.get(node.input[1])
    return src is not None and src.op_type == "DequantizeLinear"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from typer.testing import CliRunner

    import cli
    from automl.tasks import DataConfig, get_task

    root = tmp_path_factory.mktemp("hostile")
    best = _hostile_checkpoint(root / "best.pt")
    args = ["compress", str(best), "--json", "--prune-ratio", "0", "--quantize", "int8", "--calibration", "minmax",
            "--max-drop", str(MAX_DROP), "--calib-samples", "128", "--warmup", "1", "--repeats", "5",
            "--threads", "1"]
    res = CliRunner().invoke(cli.app, args)
    assert res.exit_code == 0, (res.stderr, res.exception)
    bundle = get_task("image").load_data(DataConfig(source="digits"))
    return {"best": best, "report": json.loads(res.stdout), "bundle": bundle, "root": root}


def test_plain_int8_collapses_on_the_hostile_layer(hostile: dict[str, Any]) -> None:
    from compress.quantize import calibration_reader, quantize_static_int8

    bundle, report = hostile["bundle"], hostile["report"]
    fp32 = next(v for v in report["variants"] if v["name"] == "fp32")
    plain = quantize_static_int8(fp32["path"], hostile["root"] / "plain.int8.onnx",
                                 calibration_reader(bundle.x_train, 128), None, calibration="minmax")
    drop = 100 * (report["baseline"]["metric_value"] - _acc(plain, bundle))
    assert drop > 10 * MAX_DROP, drop  # far outside --max-drop
    tuning = report["quantization"]["int8_tuning"]["int8"]
    assert tuning["plain_int8_val_drop"] > 10 * MAX_DROP


def test_fallback_keeps_the_hostile_layer_fp32_and_lands_within_max_drop(hostile: dict[str, Any]) -> None:
    import onnx

    bundle, report = hostile["bundle"], hostile["report"]
    tuning = report["quantization"]["int8_tuning"]["int8"]
    sens = {s["node"]: s["val_drop"] for s in tuning["sensitivity"]}
    assert set(sens) == {HOSTILE, CONSUMER, "/classifier/Gemm"}
    assert sens[HOSTILE] > 10 * MAX_DROP and sens["/classifier/Gemm"] < MAX_DROP, sens
    assert HOSTILE in tuning["kept_fp32"] and "/classifier/Gemm" not in tuning["kept_fp32"]
    assert tuning["within_max_drop"] and tuning["val_drop"] <= MAX_DROP
    row = next(v for v in report["variants"] if v["name"] == "int8")
    assert row["kept_fp32"] == tuning["kept_fp32"] and row["calibration"] == "minmax, per-channel"
    # re-measured from the file: within --max-drop on the test split, and not rejected for accuracy
    acc = _acc(row["path"], bundle)
    assert abs(acc - row["accuracy"]) < 1e-6
    assert 100 * (report["baseline"]["metric_value"] - acc) <= MAX_DROP
    assert row["verdict"] != "rejected", row["reason"]
    proto = onnx.load(row["path"])
    assert not _weight_is_quantized(proto, HOSTILE)  # really FP32 in the file
    assert _weight_is_quantized(proto, "/classifier/Gemm")  # the rest is still INT8
    assert row["size_bytes"] < next(v for v in report["variants"] if v["name"] == "fp32")["size_bytes"] * 1.5


def test_report_records_the_cpu_instruction_sets(hostile: dict[str, Any]) -> None:
    from compress.quantize import cpu_features

    feats = hostile["report"]["hardware"]["cpu_features"]
    assert feats == cpu_features()
    if Path("/proc/cpuinfo").is_file():
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
        assert feats["avx2"] == ("avx2" in flags) and feats["avx512_vnni"] == ("avx512_vnni" in flags)


def test_auto_calibration_picks_the_best_validation_recipe(hostile: dict[str, Any]) -> None:
    """Every recipe is measured; the chosen one has the best validation metric of them."""
    from automl.runtime.ort import make_session as session
    from automl.tasks import get_task
    from compress.bench import ort_metric
    from compress.int8tune import recipes_for, tune_int8
    from compress.quantize import calibration_reader

    bundle, report = hostile["bundle"], hostile["report"]
    fp32 = next(v for v in report["variants"] if v["name"] == "fp32")["path"]
    metric_fn = get_task("image").metric_fn()
    seen: list[Path] = []

    def val(path: Path) -> float:
        seen.append(path)
        return ort_metric(session(path, ["CPUExecutionProvider"], 1), bundle.x_val, bundle.y_val, metric_fn)

    ref = report["baseline"]["val_metric"]
    res = tune_int8(fp32, hostile["root"] / "auto.onnx", lambda: calibration_reader(bundle.x_train, 128), val,
                    ref, "maximize", "accuracy", 100.0, recipes_for("auto"), fallback=False)
    assert len(res.recipes) == 6 and len(seen) == 6
    assert {(r["calibration"], r["per_channel"]) for r in res.recipes} == {
        (m, pc) for m in ("minmax", "entropy", "percentile") for pc in (True, False)}
    vals = [r["val_metric"] for r in res.recipes]
    chosen = next(r for r in res.recipes if r["chosen"])
    assert chosen["val_metric"] == max(vals)
    assert res.sensitivity is None and res.kept_fp32 == []  # within this (loose) max drop: no fallback
    got = ort_metric(session(res.path, ["CPUExecutionProvider"], 1), bundle.x_val, bundle.y_val, metric_fn)
    assert np.isclose(got, chosen["val_metric"], atol=1e-6)
