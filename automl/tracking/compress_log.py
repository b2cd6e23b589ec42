"""``automl compress --mlflow URI``: the compress run, in the study's experiment, nested under its study
run: compress's settings as params, compress_report.json as an artifact, one nested run per variant
(its metric, size, latency, verdict) and the recommended ONNX file as an MLflow model
(``mlflow.onnx.log_model``) with a signature and an input example from the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.tracking.mlflow_log import (
    ROLE,
    client_for,
    experiment_id,
    log_params,
    metric_list,
    study_run_id,
)

#: variant figures logged as metrics: report key -> metric name (latency at batch 1 and 64, in ms)
LATENCIES = (("b1", "p50"), ("b1", "p95"), ("b64", "p50"), ("b64", "p95"))


def _variant_metrics(row: dict[str, Any], metric: str) -> dict[str, float]:
    out = {k: row[k] for k in ("size_bytes", "drop", "speedup_vs_fp32", "speedup_vs_torch", "size_ratio")
           if isinstance(row.get(k), (int, float))}
    if isinstance(row.get("metric_value"), (int, float)):
        out[metric] = row["metric_value"]
    for batch, q in LATENCIES:
        value = (row.get("latency_ms") or {}).get(batch, {}).get(q)
        if isinstance(value, (int, float)):
            out[f"latency_{batch}_{q}_ms"] = value
    return out


def log_compress(uri: str, *, report: dict[str, Any], report_path: str | Path, study: str | None,
                 trial: int | None, example: Any = None) -> str:
    """Log one compress run (see the module docstring) to ``uri``; returns its run id. ``example``: a
    few model inputs (a numpy array) for the signature and input example. Raises what MLflow raises."""
    client = client_for(uri)
    exp = experiment_id(client, study or "automl-compress")
    parent = study_run_id(client, exp, study, {}) if study else None
    metric = str(report.get("metric", "metric"))
    run = client.create_run(exp, run_name="compress", tags={
        ROLE: "compress", **({"mlflow.parentRunId": parent} if parent else {}),
        **({"trial": str(trial)} if trial is not None else {}),
        "recommended_variant": str(report.get("recommended_variant", "")), "task": str(report.get("task", ""))})
    run_id = run.info.run_id
    settings = {k: v for k, v in (report.get("settings") or {}).items() if k not in ("checkpoint", "out")}
    log_params(client, run_id, settings)
    baseline = report.get("baseline") or {}
    client.log_batch(run_id, metrics=metric_list({f"baseline_{metric}": baseline.get("metric_value")}))
    for row in report.get("variants") or []:
        child = client.create_run(exp, run_name=str(row.get("name")), tags={
            ROLE: "variant", "mlflow.parentRunId": run_id, "verdict": str(row.get("verdict")),
            "reason": str(row.get("reason") or ""), "recommended": str(bool(row.get("recommended"))),
            "file": str(row.get("file", ""))})
        log_params(client, child.info.run_id, {"kind": row.get("kind"), "base": row.get("base"),
                                               "provider": row.get("provider")})
        client.log_batch(child.info.run_id, metrics=metric_list(_variant_metrics(row, metric)))
        client.set_terminated(child.info.run_id, "FINISHED")
    client.log_artifact(run_id, str(report_path))
    try:
        log_onnx_model(uri, run_id, Path(str(report.get("recommended_copy") or report["recommended"])), example)
    finally:
        client.set_terminated(run_id, "FINISHED")
    return run_id


def log_onnx_model(uri: str, run_id: str, path: Path, example: Any) -> None:
    """``path`` as the MLflow model ``model`` of run ``run_id``, with the signature of ``example``
    (inputs) and of what ONNX Runtime answers to it."""
    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow.models import infer_signature

    signature = None
    if example is not None:
        from automl.runtime.ort import make_session

        session = make_session(str(path))
        outputs = session.run(None, {session.get_inputs()[0].name: example})[0]
        signature = infer_signature(example, outputs)
    from automl.runtime.ort import default_providers

    mlflow.set_tracking_uri(uri)  # the fluent API logs models into the active run, started here by its id
    with mlflow.start_run(run_id=run_id):
        # the providers this machine has (MLflow's default asks for CUDA and ONNX Runtime complains without a GPU)
        mlflow.onnx.log_model(onnx.load(str(path)), name="model", signature=signature, input_example=example,
                              onnx_execution_providers=default_providers())
