"""Stage ``quantize``: the INT8 (static with tuned calibration and FP32 fallback, or dynamic) and FP16
variants of each FP32 variant worth quantizing. Its ``--search`` choices: mode and calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.context import CompressContext, Network
from compress.stages._registry import Stage, register_stage
from compress.verdict import Variant, metric_drop


@register_stage("quantize", order=30)
class QuantizeStage(Stage):
    def params(self, ctx: CompressContext) -> dict[str, tuple[Any, ...]]:
        from automl.models import family_of
        from automl.runtime.ort import gpu_present
        from compress.quantize import CALIBRATIONS

        if family_of(ctx.ckpt["arch"]).quantize_unsupported:
            return {}
        return {"quantize": ("none", "int8", "fp16") if gpu_present() else ("none", "int8"),
                "calibration": CALIBRATIONS}

    def run(self, ctx: CompressContext) -> list[Variant]:
        made: list[Variant] = []
        ctx.sections["quantization"] = quantize(ctx, made)
        return made


def quantize(ctx: CompressContext, made: list[Variant]) -> dict[str, Any]:
    """Add to ``made`` the INT8 / FP16 variants of each FP32 variant of ``ctx`` worth quantizing, as
    files in ``ctx.work``; returns the report section."""
    from automl.exceptions import ArtifactError
    from automl.models import family_of
    from automl.runtime.ort import gpu_present
    from compress.lineage import onnx_meta
    from compress.quantize import convert_fp16, cpu_has_vnni, int8_method, mac_shares

    settings = ctx.settings
    mode = settings.quantize
    info: dict[str, Any] = {"mode": mode}
    if mode == "none":
        return info
    unsupported = family_of(ctx.ckpt["arch"]).quantize_unsupported
    if unsupported:  # the prune stage said so in its note
        info["skipped"] = unsupported
        return info
    gpu = gpu_present()
    want_int8 = mode in ("auto", "int8")
    want_fp16 = mode == "fp16" or (mode == "auto" and gpu)
    if mode == "auto" and not gpu:
        ctx.note("fp16 skipped: no GPU here (FP16 pays off on the CUDA execution provider; ask with --quantize fp16)")
    shares = mac_shares(ctx.network("fp32").module, ctx.example)
    method, why = int8_method(shares)
    info.update({"mac_shares": {k: round(v, 4) for k, v in shares.items()}, "int8_method": method,
                 "int8_why": why, "reduce_range": not cpu_has_vnni()})
    for base in [v for v in ctx.variants if v.kind == "fp32"]:
        if base.name == "pruned" and base.metric_value is not None and ctx.ref_metric is not None and \
                metric_drop(ctx.ref_metric, base.metric_value, ctx.task.direction, ctx.task.metric) > settings.max_drop:
            ctx.note("pruned model loses too much accuracy: its INT8/FP16 variants were not made")
            continue
        net = ctx.network(base.name)
        name = "" if base.name == "fp32" else "pruned-"
        # what the ONNX metadata (and so predict and serve) calls the file: pruned + INT8 is not plain INT8
        tag = "pruned-" if base.name == "pruned" or "pruned_from" in net.ckpt else ""
        if want_int8:
            try:
                made.append(_int8_variant(ctx, base, net, method, name, info, tag))
            except ArtifactError as exc:  # the FP32 (and other) variants are still written and measured
                (ctx.work / f"{net.prefix}.int8.onnx").unlink(missing_ok=True)  # no half-written file in the set
                ctx.note(f"{name}int8 skipped: {exc}")
                info.setdefault("failed", {})[f"{name}int8"] = str(exc)
        if want_fp16:
            target = ctx.work / f"{net.prefix}.fp16.onnx"
            ctx.obs.on_stage(f"converting {name}fp16")
            try:
                convert_fp16(base.path, target, onnx_meta(ctx, net, f"{tag}fp16", base.path,
                                                          [{"step": "quantize", "settings": {"kind": "fp16"}}]))
            except ArtifactError as exc:
                target.unlink(missing_ok=True)
                ctx.note(f"{name}fp16 skipped: {exc}")
                info.setdefault("failed", {})[f"{name}fp16"] = str(exc)
                continue
            made.append(Variant(f"{name}fp16", "fp16", base.name, str(target)))
    return info


def _int8_variant(ctx: CompressContext, base: Variant, net: Network, method: str, name: str, info: dict[str, Any],
                  tag: str) -> Variant:
    """The INT8 variant of ``base`` (static: tuned calibration and FP32 fallback; dynamic otherwise),
    written into ``ctx.work``; ArtifactError when it cannot be made."""
    from automl.runtime.ort import make_session
    from compress import bench
    from compress.int8tune import recipes_for, tune_int8
    from compress.lineage import onnx_meta
    from compress.quantize import calibration_reader, finish_onnx, quantize_dynamic_int8

    settings, bundle = ctx.settings, ctx.bundle
    target = ctx.work / f"{net.prefix}.int8.onnx"
    kind = "int8" if method == "static" else "int8-dynamic"
    ctx.obs.on_stage(f"quantizing {name}int8 ({method})")
    step = {"kind": kind, "method": method, "reduce_range": info.get("reduce_range")}
    variant = Variant(f"{name}int8", kind, base.name, str(target))
    if method != "static":
        quantize_dynamic_int8(base.path, target, onnx_meta(ctx, net, f"{tag}{kind}", base.path,
                                                           [{"step": "quantize", "settings": step}]))
        return variant
    readers: list[Any] = []  # ONNX Runtime CalibrationDataReaders (a class made on first use)

    def make_reader() -> Any:
        readers.append(calibration_reader(bundle.x_train, settings.calib_samples, seed=settings.seed))
        return readers[-1]

    def val_metric(path: Path) -> float:
        sess = make_session(path, ["CPUExecutionProvider"], settings.threads)
        return bench.ort_metric(sess, bundle.x_val, bundle.y_val, ctx.metric_fn)

    tuned = tune_int8(
        base.path, target, make_reader, val_metric, ctx.ref_val, ctx.task.direction, ctx.task.metric,
        settings.max_drop, recipes_for(settings.calibration), fallback=settings.fallback, on_step=ctx.obs.on_stage,
    )
    step.update({"calibration": tuned.recipe.label, "calib_samples": settings.calib_samples,
                 "fallback": settings.fallback, "kept_fp32": list(tuned.kept_fp32)})
    finish_onnx(target, onnx_meta(ctx, net, f"{tag}{kind}", base.path, [{"step": "quantize", "settings": step}]))
    info.setdefault("int8_tuning", {})[variant.name] = tuned.to_json()
    variant.calibration = tuned.recipe.label
    variant.kept_fp32 = list(tuned.kept_fp32)
    if tuned.failed:
        ctx.note(f"{variant.name}: calibration {'; '.join(tuned.failed_labels)} failed and was skipped "
                 f"({tuned.failed[0]['error']}); chosen: {tuned.recipe.label}")
    if not tuned.within_max_drop:
        ctx.note(f"{variant.name}: {tuned.val_drop:.2f} validation points lost even with "
                 f"{len(tuned.kept_fp32)} layer(s) kept FP32 (max drop {settings.max_drop:g})")
    elif tuned.kept_fp32:
        ctx.note(f"{variant.name}: plain INT8 lost {tuned.plain_val_drop:.2f} validation points; "
                 f"kept FP32: {', '.join(tuned.kept_fp32)} -> {tuned.val_drop:.2f}")
    first = readers[0]
    info["calib_samples"] = int(len(first.index))
    info["calib_batches"] = int(max(r.batches for r in readers))
    if len(first.index) < first.requested and "calib_note" not in info:
        info["calib_note"] = (f"calibrated on {len(first.index)} of the {first.requested} samples asked for "
                              f"(the training split has {first.available} rows; equal batches of {first.batch})")
        ctx.note(info["calib_note"])
    return variant
