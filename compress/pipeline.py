"""best.pt -> the registered stages (``compress.stages``: export, prune, accuracy, quantize, …) in
order over one ``CompressContext`` -> variants (fp32, pruned, int8, fp16) -> measured on the test
split -> gated -> report.

Every claim in the report is measured on this machine: accuracy with ONNX Runtime on the test split
recorded in best.pt, latency p50/p95 at batch 1 and 64 after a warm-up. A variant that loses more
than ``max_drop`` metric points is rejected; a quantized variant that is not faster than the FP32
ONNX model is marked "not faster". The recommended file is the fastest variant left (batch 64).
"""

from __future__ import annotations

import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.device import resolve_device
from automl.exceptions import ArtifactError, ConfigError
from compress.checks import check_checkpoint_file
from compress.context import PARITY_ROWS, CompressContext, CompressObserver, CompressSettings, TimedObserver
from compress.verdict import gate, recommend

if TYPE_CHECKING:
    from torch import nn

    from automl.tasks import DataBundle, Task

__all__ = ["PARITY_ROWS", "REPORT_NAME", "STABLE_NAME", "CompressObserver", "CompressResult", "CompressSettings",
           "is_compress_output", "load_inputs", "run_compress"]

REPORT_NAME = "compress_report.json"
STABLE_NAME = "best.onnx"  # a copy of the recommended variant, the file the README serves
REPORT_VERSION = 1


@dataclass
class CompressResult:
    """The report: also written as compress_report.json."""

    report: dict[str, Any]
    report_path: str

    @property
    def recommended(self) -> str:
        return self.report["recommended"]

    def to_json(self) -> dict[str, Any]:
        return {**self.report, "report_path": self.report_path}


def load_inputs(checkpoint: str | Path) -> tuple[dict[str, Any], Task, nn.Module, DataBundle]:
    """(checkpoint dict, task, rebuilt model, data bundle); ArtifactError for anything unusable."""
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.data.bundle import DataConfig
    from automl.tasks import get_task

    path = Path(checkpoint)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes a zip; say so before torch does
        raise ArtifactError(f"{path}: not a best.pt (not a PyTorch checkpoint file)")
    ckpt = load_checkpoint(path)
    try:
        task = get_task(str(ckpt["task"]))
    except ConfigError as exc:
        raise ArtifactError(f"{checkpoint}: {exc}") from exc
    data = ckpt.get("data")
    if not isinstance(data, dict) or "source" not in data:
        raise ArtifactError(f"{checkpoint}: checkpoint records no training data ('data'); "
                            "compress needs it to fine-tune, calibrate and measure")
    try:
        cfg = DataConfig(**data)
    except TypeError as exc:
        raise ArtifactError(f"{checkpoint}: unreadable 'data' entry ({exc})") from exc
    model = model_from_checkpoint(ckpt, str(checkpoint))
    metrics = ckpt.get("metrics") if isinstance(ckpt.get("metrics"), dict) else {}
    try:  # the metric the search judged by (--max-drop is in its units), at its decision threshold
        task.use_stored_metric(str(metrics["metric"]) if metrics.get("metric") else None)
    except ConfigError as exc:
        raise ArtifactError(f"{checkpoint}: {exc}") from exc
    threshold = metrics.get("threshold")
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0.0 <= threshold <= 1.0:
        task.threshold = float(threshold)
    bundle = task.load_data(cfg)
    task.bind(bundle)
    if not len(bundle.y_test):
        raise ArtifactError(f"{checkpoint}: the recorded data has an empty test split; nothing to measure on")
    return ckpt, task, model, bundle


def run_compress(settings: CompressSettings, observer: CompressObserver | None = None,
                 mlflow: str | None = None) -> CompressResult:
    """The whole of ``automl compress``: see the module docstring. Writes into ``settings.out_dir()``.
    The recommended file becomes an Optuna artifact of the checkpoint's study, and with ``mlflow`` (a
    tracking URI) the run is logged there (``automl.tracking``); neither can fail the run (a note says).

    ``settings.threads`` > 0 caps PyTorch's intra-op threads for the run (restored afterwards) and
    ONNX Runtime's for every session it opens: on a shared machine fewer threads run much faster.
    """
    check_checkpoint_file(settings.checkpoint)  # before the seconds of importing PyTorch
    import torch

    before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _run(settings, observer, mlflow)
    finally:
        torch.set_num_threads(before)


def _run(settings: CompressSettings, observer: CompressObserver | None, mlflow: str | None = None) -> CompressResult:
    from automl.artifacts import StagedDir, atomic_write_bytes, atomic_write_json
    from automl.lineage.card import CARD_NAME, build_card

    obs = TimedObserver(observer or CompressObserver())
    start = time.perf_counter()
    obs.on_stage("loading checkpoint and data")
    ckpt, task, model, bundle = load_inputs(settings.checkpoint)
    device = str(resolve_device(settings.device))
    out = settings.out_dir().resolve()  # absolute paths in the report, wherever it is read from
    # Every file is written into a hidden folder beside ``out`` and the set replaces the previous
    # run's only at the end: a kill never leaves new files beside old ones, nor ungated ones.
    with StagedDir(out, owned=is_compress_output) as staged:
        report = _variants_and_report(settings, obs, ckpt, task, model, bundle, device, staged.work, out)
        report["seconds"] = round(time.perf_counter() - start, 2)
        obs.on_stage("writing report")
        report["stage_seconds"] = obs.seconds
        atomic_write_json(staged.work / REPORT_NAME, report)
        atomic_write_bytes(staged.work / CARD_NAME, build_card(report).encode())  # its figures are the report's
        staged.commit(last=REPORT_NAME)
    result = CompressResult(report, str(out / REPORT_NAME))
    # after the files are in place; what fails is said (and kept in the returned report, not the file)
    for note in _register(settings, obs, result, ckpt, bundle, mlflow):
        obs.on_note(note)
        report["notes"].append(note)
    obs.close()
    return result


def _register(settings: CompressSettings, obs: TimedObserver, result: CompressResult, ckpt: dict[str, Any],
              bundle: DataBundle, mlflow: str | None) -> list[str]:
    """The recommended file as an Optuna artifact of the checkpoint's study (when best.pt sits in its
    study's run folder and its storage has no hidden password), then the MLflow run; notes of what failed."""
    from automl.tracking import artifact_store_dir, log_compress, redact_uri, scrub, secrets_of, upload_study_artifact

    notes: list[str] = []
    report, study, trial = result.report, ckpt.get("study"), ckpt.get("trial")
    run_dir = Path(settings.checkpoint).resolve().parent
    url = str(ckpt.get("storage") or "")
    if study and isinstance(trial, int) and run_dir.name == study and url and "***" not in url:
        try:
            import optuna

            from automl.study.storage import open_storage

            storage = open_storage(url)
            upload_study_artifact(optuna.load_study(study_name=study, storage=storage), storage,
                                  report["recommended_copy"], artifact_store_dir(run_dir.parent))
        except Exception as exc:  # a study moved or deleted: the files are written, only the link is missing
            notes.append(f"{STABLE_NAME} was not registered as an Optuna artifact of study {study}: "
                         f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}"[:300])
    if mlflow:
        obs.on_stage("logging to MLflow")
        try:
            example = bundle.x_test[:2].detach().cpu().numpy()
            log_compress(mlflow, report=report, report_path=result.report_path, study=study,
                         trial=trial if isinstance(trial, int) else None, example=example)
        except Exception as exc:  # a tracker down: the run stands, its log does not
            first = str(exc).strip().splitlines()
            notes.append(scrub(f"MLflow logging to {redact_uri(mlflow)} failed ({exc.__class__.__name__}: "
                               f"{first[0] if first else ''})"[:300], secrets_of(mlflow)))
    return notes


def is_compress_output(name: str) -> bool:
    """Whether a file name in the output folder is one compress writes (replaced by the next run)."""
    return name in (REPORT_NAME, "pruned.pt", STABLE_NAME, "MODEL_CARD.md") or (
        name.startswith("model.") and ".onnx" in name)


def _variants_and_report(
    settings: CompressSettings, obs: TimedObserver, ckpt: dict[str, Any], task: Task, model: nn.Module,
    bundle: DataBundle, device: str, work: Path, out: Path,
) -> dict[str, Any]:
    """Run the registered stages (prune, export, accuracy, quantize, …) over one context, then measure,
    gate and recommend every variant, writing files into ``work``; the report names them by their
    place in ``out``, where they go when the run is complete."""
    from automl.runtime.ort import default_providers
    from automl.train import evaluate
    from compress import bench
    from compress.lineage import evaluation, report_record
    from compress.measure import budget_stage, measure_latency, measure_new
    from compress.stages import run_stages

    src = str(settings.checkpoint)
    metric, direction = task.metric, task.direction
    metric_fn, loss_fn = task.metric_fn(), task.loss_fn(0.0)
    _, ref_metric = evaluate(model, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    _, ref_val = evaluate(model, bundle.x_val, bundle.y_val, loss_fn, metric_fn)
    ctx = CompressContext(settings=settings, obs=obs, ckpt=ckpt, task=task, model=model, bundle=bundle,
                          example=task.example_input(bundle.meta, 1), device=device, work=work, out=out,
                          ref_val=ref_val, ref_metric=ref_metric, metric_fn=metric_fn, providers=default_providers())
    variants = run_stages(ctx)
    measure_new(ctx)  # what the stages after the accuracy stage made
    cfg = ctx.bench
    obs.on_stage(f"measuring latency of {len(variants)} variants and PyTorch eager")
    torch_ms = measure_latency(variants, ctx.sessions, model, bundle.x_test, cfg, device)
    gate(variants, ref_metric, direction, metric, settings.max_drop, settings.parity_tol, torch_ms)
    ensemble = None
    if ckpt["arch"].get("family") == "ensemble":  # issue 26: what the ensemble costs against its best member
        from compress.ensemble import ensemble_latency

        obs.on_stage("timing the ensemble against its best member")
        ensemble = ensemble_latency(ckpt, model, variants, ctx.sessions, bundle.x_test, ctx.example, cfg,
                                    ctx.providers)
    if "latency" in ckpt:  # issue 15: the study's latency budget, each variant timed on its target
        obs.on_stage("timing variants on the study's latency target")
        budget = budget_stage(variants, ckpt, bundle.x_test, src)
    else:
        budget = None
    for v in variants:  # where the file will be once the set is in place
        v.path = str(out / Path(v.path).name)
    best = recommend(variants)
    # issue 12: one name for the recommended file, whichever variant won (copied inside the staged set)
    shutil.copyfile(work / Path(best.path).name, work / STABLE_NAME)
    names = [Path(v.path).name for v in variants] + [STABLE_NAME, "pruned.pt"]
    return {
        "format_version": REPORT_VERSION,
        "checkpoint": str(Path(src).resolve()),
        "out": str(out),
        "task": task.name,
        "metric": metric,
        "direction": direction,
        "settings": asdict(settings),
        "hardware": bench.hardware(),
        "provider": ctx.providers[0],
        "baseline": {"variant": "pytorch-eager", metric: ref_metric, "metric_value": ref_metric, "val_metric": ref_val,
                     "device": device,
                     "latency_ms": torch_ms, "arch": ckpt["arch"]},
        "prune": ctx.sections.get("prune", {}),
        "quantization": ctx.sections.get("quantization", {"mode": settings.quantize}),
        "variants": [v.to_json(metric) for v in variants],
        "recommended": best.path,
        "recommended_variant": best.name,
        "recommended_copy": str(out / STABLE_NAME),
        "latency_budget": budget,
        **({"ensemble": ensemble} if ensemble else {}),
        "notes": ctx.notes,
        "evaluation": evaluation(ctx, best),
        "lineage": report_record(ctx, asdict(settings), names),
    }
