"""The lineage records compress writes (``automl.lineage``): pruned.pt's, each ONNX variant's and
compress_report.json's, each naming its parent file by SHA-256, the step that made it with its
settings, the study and trial, the data fingerprint and the metrics; and the per-class test figures of
the recommended variant that the report (and the model card) carry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compress.context import CompressContext, Network
    from compress.verdict import Variant

MAX_CLASS_ROWS = 1000  # per-class rows written into the report (a model with more classes is summarised)


def data_print(ctx: CompressContext) -> dict[str, Any]:
    """The fingerprint of the data this run loaded, computed once a run; a note when it differs from the
    one best.pt recorded at search time (the data source changed since)."""
    from automl.lineage import data_fingerprint, data_of

    if ctx.lineage_data is None:
        ctx.lineage_data = data_fingerprint(ctx.bundle, dict(ctx.ckpt.get("data") or {}))
        then = data_of(ctx.ckpt).get("rows_sha256")
        if then and then != ctx.lineage_data["rows_sha256"]:
            ctx.note("the data loaded now differs from the data best.pt was searched on (its rows' SHA-256 "
                     "changed): the figures below are measured on today's data")
    return ctx.lineage_data


def file_parent(ctx: CompressContext, src: str | Path) -> dict[str, str]:
    """The parent link of a file made from ``src``: a file already in place (best.pt) or one written in
    this run's staging folder (pruned.pt, an FP32 ONNX file), named by where it will be once in place."""
    from automl.lineage import parent_entry

    src = Path(src)
    staged = ctx.work / src.name
    if staged.is_file() and src.parent in (ctx.out, ctx.work):
        return parent_entry(staged, place=ctx.out / src.name, child_dir=ctx.out)
    return parent_entry(src, child_dir=ctx.out)


def record(ctx: CompressContext, artifact: str, steps: list[dict[str, Any]], parent: str | Path,
           ckpt: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A lineage record of a file this run makes from ``parent`` (metrics and study from ``ckpt``)."""
    from automl.lineage import make_record, study_of

    ckpt = ckpt if ckpt is not None else ctx.ckpt
    metrics = {k: v for k, v in dict(ckpt.get("metrics") or {}).items() if k != "sizes"}
    return make_record(artifact, steps, parents=[file_parent(ctx, parent)], study=study_of(ckpt),
                       data=data_print(ctx), metrics=metrics, extra=extra)


def onnx_meta(ctx: CompressContext, net: Network, variant: str, parent: str | Path,
              steps: list[dict[str, Any]]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file of ``net``: automl's metadata and its lineage record."""
    from automl.lineage import onnx_props
    from automl.runtime.onnx_meta import metadata_from_checkpoint

    rec = record(ctx, "onnx", steps, parent, net.ckpt, extra={"variant": variant})
    return {**metadata_from_checkpoint(net.ckpt, variant, net.src), **onnx_props(rec)}


def prune_steps(settings: Any, info: dict[str, Any], finetune: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps that made pruned.pt: prune, then fine-tune or distil (when it trained)."""
    prune = {"step": "prune", "settings": {"prune_ratio": settings.prune_ratio, "importance": settings.importance,
                                           **{k: info[k] for k in ("params_before", "params_after") if k in info}}}
    if not settings.finetune_epochs:
        return [prune]
    distilled = settings.distill and "distill_skipped" not in finetune
    tune = {"epochs": settings.finetune_epochs, "seed": settings.seed}
    if distilled:
        tune.update({"temperature": settings.distill_temperature, "weight": settings.distill_weight})
    return [prune, {"step": "distil" if distilled else "fine-tune", "settings": tune}]


def report_record(ctx: CompressContext, settings: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """compress_report.json's record: made by the ``compress`` step from best.pt; ``files`` maps every
    file of the set (in the staging folder now) to its SHA-256."""
    from automl.lineage import file_sha256

    files = {n: file_sha256(ctx.work / n) for n in sorted(set(names)) if (ctx.work / n).is_file()}
    before = ctx.ckpt.get("lineage") if isinstance(ctx.ckpt.get("lineage"), dict) else {}
    search = next((s for s in before.get("steps") or [] if isinstance(s, dict) and s.get("step") == "search"), {})
    return record(ctx, "compress-report", [{"step": "compress", "settings": settings}], ctx.settings.checkpoint,
                  extra={"files": files, "search": search})


def evaluation(ctx: CompressContext, best: Variant) -> dict[str, Any]:
    """The recommended variant's test figures, measured with its ONNX Runtime session: the metric, and
    for a classifier each class's precision, recall, F1 and support (``sklearn.metrics``)."""
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support

    from compress import bench

    out: dict[str, Any] = {"variant": best.name, "split": "test", "rows": len(ctx.bundle.y_test),
                           "metric": ctx.task.metric, "value": best.metric_value}
    classes = [str(c) for c in (ctx.ckpt.get("preprocess") or {}).get("classes") or []]
    if not classes:  # a regression
        return out
    logits = bench.ort_logits(ctx.sessions[best.name], ctx.bundle.x_test)
    if logits.ndim != 2 or logits.shape[1] != len(classes):
        return out
    y_true = ctx.bundle.y_test.cpu().numpy().astype(np.int64)
    y_pred = logits.argmax(axis=1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out["per_class"] = [{"class": c, "precision": round(float(a), 4), "recall": round(float(b), 4),
                         "f1": round(float(d), 4), "support": int(e)}
                        for c, a, b, d, e in zip(classes, p, r, f, s, strict=True)][:MAX_CLASS_ROWS]
    out["num_classes"] = len(classes)
    return out
