"""The stages of ``automl compress`` that make and measure variants: prune + fine-tune, quantize,
accuracy and latency. ``compress.pipeline`` orders them over one run and writes the report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.bench import BenchConfig
from compress.verdict import Variant, metric_drop

if TYPE_CHECKING:
    from compress.pipeline import CompressObserver, CompressSettings


def prune_stage(
    settings: CompressSettings, ckpt: dict[str, Any], task: Any, model: Any, bundle: Any, example: Any,
    device: str, out: Path, obs: CompressObserver,
) -> tuple[dict[str, Any], Path | None]:
    """Prune, fine-tune and save pruned.pt; returns (the prune section of the report, its path or None)."""
    from automl.artifacts import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
    from automl.train import evaluate
    from compress.prune import finetune, prune_model

    obs.on_stage("pruning channels")
    taylor = (bundle.x_train, bundle.y_train, task.loss_fn(0.0)) if settings.importance == "taylor" else None
    outcome = prune_model(model, ckpt["arch"], example, settings.prune_ratio, settings.importance, taylor)
    if outcome.model is None:
        return outcome.to_json(), None
    pruned = outcome.model
    loss_fn, metric_fn = task.loss_fn(0.0), task.metric_fn()
    _, before_ft = evaluate(pruned, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    if settings.finetune_epochs:
        from compress.distill import distill_unsupported

        teacher = model if settings.distill else None
        why_not = distill_unsupported(task, bundle) if settings.distill else None
        if why_not:
            teacher = None
            obs.on_note(f"distillation skipped: {why_not}; plain fine-tuning")
        how = "distilling from the unpruned model" if teacher is not None else "plain"
        obs.on_stage(f"fine-tuning pruned model ({settings.finetune_epochs} epochs, {how})")
        epochs = settings.finetune_epochs
        outcome.finetune = finetune(
            pruned, task, bundle, dict(ckpt.get("params") or {}), epochs, device, settings.seed,
            on_epoch=lambda e, rec: obs.on_epoch(e, epochs, rec), teacher=teacher,
            temperature=settings.distill_temperature, weight=settings.distill_weight,
        )
        if why_not:
            outcome.finetune["distill_skipped"] = why_not
    pruned = pruned.cpu().eval()
    val_loss, val_metric = evaluate(pruned, bundle.x_val, bundle.y_val, loss_fn, metric_fn)
    test_loss, test_metric = evaluate(pruned, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    outcome.finetune[f"test_{task.metric}_before"] = before_ft
    m = task.metric
    metrics = {"metric": m, f"val_{m}": val_metric, "val_loss": val_loss, f"test_{m}": test_metric,
               "test_loss": test_loss, "sizes": bundle.sizes()}
    info = outcome.to_json()
    new = make_checkpoint(
        task=task.name, arch=outcome.arch, model=pruned, preprocess=ckpt["preprocess"], data=ckpt["data"],
        metrics=metrics, params=ckpt.get("params") or {}, study=ckpt.get("study"), trial=ckpt.get("trial"),
        extra={"pruned_from": str(settings.checkpoint), "prune": info},
    )
    path = save_checkpoint(out / "pruned.pt", new)
    model_from_checkpoint(load_checkpoint(path), str(path))  # must load back with weights_only and rebuild
    return info, path


def quantize_stage(
    settings: CompressSettings, ckpt: dict[str, Any], src: str, nets: dict[str, Any], variants: list[Variant],
    bundle: Any, example: Any, work: Path, out: Path, ref_metric: float, direction: str, metric: str,
    obs: CompressObserver, note: Any, ref_val: float, metric_fn: Any,
) -> dict[str, Any]:
    """Make the INT8 / FP16 variants of each network worth quantizing, as files in ``work`` (bound for
    ``out``); returns the report section."""
    from automl.exceptions import ArtifactError
    from automl.models import family_of
    from automl.runtime.onnx_meta import metadata_from_checkpoint
    from compress import bench
    from compress.export import _gpu_present, session
    from compress.quantize import convert_fp16, cpu_has_vnni, int8_method, mac_shares

    def val_metric(path: Path) -> float:
        sess = session(path, ["CPUExecutionProvider"], settings.threads)
        return bench.ort_metric(sess, bundle.x_val, bundle.y_val, metric_fn)

    mode = settings.quantize
    info: dict[str, Any] = {"mode": mode}
    if mode == "none":
        return info
    unsupported = family_of(ckpt["arch"]).quantize_unsupported
    if unsupported:  # the caller said so in its note
        info["skipped"] = unsupported
        return info
    gpu = _gpu_present()
    want_int8 = mode in ("auto", "int8")
    want_fp16 = mode == "fp16" or (mode == "auto" and gpu)
    if mode == "auto" and not gpu:
        note("fp16 skipped: no GPU here (FP16 pays off on the CUDA execution provider; ask with --quantize fp16)")
    shares = mac_shares(nets["fp32"], example)
    method, why = int8_method(shares)
    info.update({"mac_shares": {k: round(v, 4) for k, v in shares.items()}, "int8_method": method,
                 "int8_why": why, "reduce_range": not cpu_has_vnni()})
    for base in [v for v in list(variants) if v.kind == "fp32"]:
        if base.name == "pruned" and base.metric_value is not None and \
                metric_drop(ref_metric, base.metric_value, direction, metric) > settings.max_drop:
            note("pruned model loses too much accuracy: its INT8/FP16 variants were not made")
            continue
        prefix = "model" if base.name == "fp32" else "model.pruned"
        name = "" if base.name == "fp32" else "pruned-"
        meta_src = src if base.name == "fp32" else str(out / "pruned.pt")
        # what the ONNX metadata (and so predict and serve) calls the file: pruned + INT8 is not plain INT8
        tag = "pruned-" if base.name == "pruned" or "pruned_from" in ckpt else ""
        if want_int8:
            try:
                variants.append(_int8_variant(settings, ckpt, base, method, prefix, name, meta_src, bundle, work,
                                              ref_val, direction, metric, obs, note, val_metric, info, tag))
            except ArtifactError as exc:  # the FP32 (and other) variants are still written and measured
                (work / f"{prefix}.int8.onnx").unlink(missing_ok=True)  # no half-written file in the set
                note(f"{name}int8 skipped: {exc}")
                info.setdefault("failed", {})[f"{name}int8"] = str(exc)
        if want_fp16:
            target = work / f"{prefix}.fp16.onnx"
            obs.on_stage(f"converting {name}fp16")
            try:
                convert_fp16(base.path, target, metadata_from_checkpoint(ckpt, f"{tag}fp16", meta_src))
            except ArtifactError as exc:
                target.unlink(missing_ok=True)
                note(f"{name}fp16 skipped: {exc}")
                info.setdefault("failed", {})[f"{name}fp16"] = str(exc)
                continue
            variants.append(Variant(f"{name}fp16", "fp16", base.name, str(target)))
    return info


def _int8_variant(
    settings: CompressSettings, ckpt: dict[str, Any], base: Variant, method: str, prefix: str, name: str,
    meta_src: str, bundle: Any, work: Path, ref_val: float, direction: str, metric: str, obs: CompressObserver,
    note: Any, val_metric: Any, info: dict[str, Any], tag: str = "",
) -> Variant:
    """The INT8 variant of ``base`` (static: tuned calibration and FP32 fallback; dynamic otherwise),
    written into ``work``; ArtifactError when it cannot be made."""
    from automl.runtime.onnx_meta import metadata_from_checkpoint
    from compress.int8tune import recipes_for, tune_int8
    from compress.quantize import _finish, calibration_reader, quantize_dynamic_int8

    target = work / f"{prefix}.int8.onnx"
    kind = "int8" if method == "static" else "int8-dynamic"
    obs.on_stage(f"quantizing {name}int8 ({method})")
    meta = metadata_from_checkpoint(ckpt, f"{tag}{kind}", meta_src)
    variant = Variant(f"{name}int8", kind, base.name, str(target))
    if method != "static":
        quantize_dynamic_int8(base.path, target, meta)
        return variant
    readers: list[Any] = []

    def make_reader() -> Any:
        readers.append(calibration_reader(bundle.x_train, settings.calib_samples, seed=settings.seed))
        return readers[-1]

    tuned = tune_int8(
        base.path, target, make_reader, val_metric, ref_val, direction, metric, settings.max_drop,
        recipes_for(settings.calibration), fallback=settings.fallback, on_step=obs.on_stage,
    )
    _finish(target, meta)
    info.setdefault("int8_tuning", {})[variant.name] = tuned.to_json()
    variant.calibration = tuned.recipe.label
    variant.kept_fp32 = list(tuned.kept_fp32)
    if tuned.failed:
        note(f"{variant.name}: calibration {'; '.join(tuned.failed_labels)} failed and was skipped "
             f"({tuned.failed[0]['error']}); chosen: {tuned.recipe.label}")
    if not tuned.within_max_drop:
        note(f"{variant.name}: {tuned.val_drop:.2f} validation points lost even with "
             f"{len(tuned.kept_fp32)} layer(s) kept FP32 (max drop {settings.max_drop:g})")
    elif tuned.kept_fp32:
        note(f"{variant.name}: plain INT8 lost {tuned.plain_val_drop:.2f} validation points; "
             f"kept FP32: {', '.join(tuned.kept_fp32)} -> {tuned.val_drop:.2f}")
    first = readers[0]
    info["calib_samples"] = int(len(first.index))
    info["calib_batches"] = int(max(r.batches for r in readers))
    if len(first.index) < first.requested and "calib_note" not in info:
        info["calib_note"] = (f"calibrated on {len(first.index)} of the {first.requested} samples asked for "
                              f"(the training split has {first.available} rows; equal batches of {first.batch})")
        note(info["calib_note"])
    return variant


def measure_accuracy(v: Variant, bundle: Any, metric_fn: Any, providers: list[str], threads: int = 0) -> Any:
    """Fill size and test metric of ``v``; returns its ONNX Runtime session (on the first provider)."""
    from compress import bench
    from compress.export import session

    sess = session(v.path, providers, threads)
    v.provider = sess.get_providers()[0]
    v.size_bytes = bench.file_size(v.path)
    v.metric_value = bench.ort_metric(sess, bundle.x_test, bundle.y_test, metric_fn)
    return sess


def measure_latency(variants: list[Variant], sessions: dict[str, Any], model: Any, x: Any, cfg: BenchConfig,
                     device: str) -> dict[str, Any]:
    """Latency of every variant and of PyTorch eager, timed interleaved; returns PyTorch's. On a GPU
    each variant is also timed on the CPU provider."""
    import torch

    from compress import bench
    from compress.export import session

    runners = {v.name: bench.ort_runner(sessions[v.name], x) for v in variants}
    runners["pytorch"] = bench.torch_runner(model, x, device, cfg.threads)
    before = torch.get_num_threads()
    try:
        lat = bench.latencies(runners, cfg)
    finally:
        torch.set_num_threads(before)
    for v in variants:
        v.latency_ms = lat[v.name]
    on_gpu = [v for v in variants if v.provider != "CPUExecutionProvider"]
    if on_gpu:
        cpu = bench.latencies({v.name: bench.ort_runner(session(v.path, ["CPUExecutionProvider"], cfg.threads), x)
                               for v in on_gpu}, cfg)
        for v in on_gpu:
            v.other_latency_ms = {"CPUExecutionProvider": cpu[v.name]}
    model.cpu()
    return lat["pytorch"]


BUDGET_TIMINGS = 5  # timings of each variant against a study's latency budget (the lowest counts)


def budget_stage(variants: list[Variant], ckpt: dict[str, Any], x: Any, checkpoint: str) -> dict[str, Any] | None:
    """Time every variant on the latency target of the study best.pt came from (its ``latency`` key,
    when it was searched with ``--max-latency-ms``), the way the search timed its trials, and say
    whether each meets the budget. None when best.pt has no budget; ArtifactError when it is malformed."""
    from automl.exceptions import ArtifactError, ConfigError
    from automl.runtime.latency import LatencySpec, time_onnx

    raw = ckpt.get("latency")
    if raw is None:
        return None
    try:
        spec = LatencySpec.from_dict({k: v for k, v in raw.items() if k != "measured"} if isinstance(raw, dict)
                                     else raw)
    except (ConfigError, TypeError) as exc:
        raise ArtifactError(f"{checkpoint}: unusable 'latency' entry ({exc})") from exc
    if spec is None or spec.max_latency_ms is None:
        return None
    for v in variants:
        # The lowest of BUDGET_TIMINGS timings (each the lowest round median of its own session): on a
        # shared machine one timing of a 20-µs network read 0.021 or 0.033 ms depending on the 0.3-s
        # stretch it fell in, and a budget check wants the network's own latency, not its neighbours'.
        v.target_latency_ms = min(time_onnx(v.path, x, spec.target)[0] for _ in range(BUDGET_TIMINGS))
        v.meets_budget = bool(v.target_latency_ms <= spec.max_latency_ms)
    measured = raw.get("measured") if isinstance(raw.get("measured"), dict) else {}
    search_ms = measured.get("latency_ms")
    return {"max_latency_ms": spec.max_latency_ms, "target": spec.target.to_dict(),
            "search_latency_ms": float(search_ms) if isinstance(search_ms, (int, float)) else None,
            "meets": [v.name for v in variants if v.meets_budget]}
