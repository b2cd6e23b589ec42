"""Stage ``prune``: remove channels, fine-tune (or distil), save pruned.pt and export the pruned network
(variant ``pruned``; in a ``--search`` chain, the candidate's one FP32 network). Its ``--search``
choices: ratio, importance, fine-tuning epochs, distillation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.context import CompressContext, Network
from compress.stages._registry import Stage, register_stage

if TYPE_CHECKING:
    from compress.verdict import Variant

PRUNE_RATIOS = (0.0, 0.25, 0.5)  # the --search choices of the prune ratio


@register_stage("prune", order=10)
class PruneStage(Stage):
    def applies(self, ctx: CompressContext) -> bool:
        # the one-shot report always has a prune section (a ratio of 0 is "skipped"); a candidate prunes
        # only when its recipe says so
        return not ctx.chain or ctx.settings.prune_ratio > 0

    def params(self, ctx: CompressContext) -> dict[str, tuple[Any, ...]]:
        from automl.models import family_of
        from compress.distill import distill_unsupported

        if family_of(ctx.ckpt["arch"]).prune_unsupported:
            return {}
        from compress.prune import IMPORTANCES

        epochs = ctx.settings.finetune_epochs
        space: dict[str, tuple[Any, ...]] = {
            "prune_ratio": PRUNE_RATIOS, "importance": IMPORTANCES,
            "finetune_epochs": tuple(sorted({0, max(1, epochs // 2), max(1, epochs)})),
        }
        if distill_unsupported(ctx.task, ctx.bundle) is None:
            space["distill"] = (False, True)
        return space

    def run(self, ctx: CompressContext) -> list[Variant]:
        from automl.artifacts import load_checkpoint, model_from_checkpoint
        from compress.stages.export import export_network

        info, path = prune(ctx)
        ctx.pruned_pt = path
        if ctx.chain:  # a --search candidate: its one network is the pruned one when pruning applied
            ctx.sections["prune"] = info
            if path is None:
                ctx.note(f"pruning skipped: {info.get('skipped')}")
            else:
                pruned_ckpt = load_checkpoint(path)
                module = model_from_checkpoint(pruned_ckpt, str(path))
                ctx.networks[0] = Network("fp32", module, pruned_ckpt, str(path), "pruned", "model")
            return [export_network(ctx, ctx.networks[0])]
        _note_skips(ctx, info.get("skipped"))
        ctx.sections["prune"] = {**info, "path": str(ctx.out / path.name) if path else None}
        if path is None:
            return []
        pruned_ckpt = load_checkpoint(path)
        net = Network("pruned", model_from_checkpoint(pruned_ckpt, str(path)), pruned_ckpt, str(ctx.out / path.name),
                      "pruned", "model.pruned", "exporting pruned ONNX")
        ctx.networks.append(net)
        return [export_network(ctx, net)]


def _note_skips(ctx: CompressContext, prune_skip: str | None) -> None:
    """One note for what is skipped: a model neither pruning nor quantization applies to (a tree
    ensemble) gets one line, not two."""
    from automl.models import family_of

    quant_skip = family_of(ctx.ckpt["arch"]).quantize_unsupported if ctx.settings.quantize != "none" else None
    if prune_skip and quant_skip:
        ctx.note(f"pruning and quantization skipped: {prune_skip}, and {quant_skip}; "
                 f"the FP32 ONNX model is exported and measured")
    elif prune_skip:
        ctx.note(f"pruning skipped: {prune_skip}")
    elif quant_skip:
        ctx.note(f"quantization skipped: {quant_skip}")


def prune(ctx: CompressContext) -> tuple[dict[str, Any], Path | None]:
    """Prune, fine-tune and save pruned.pt into ``ctx.work``; returns (the prune section of the report,
    its path or None when pruning was skipped)."""
    from automl.artifacts import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
    from automl.train import evaluate
    from compress.lineage import prune_steps, record
    from compress.prune import finetune, prune_model

    settings, task, bundle, ckpt, obs = ctx.settings, ctx.task, ctx.bundle, ctx.ckpt, ctx.obs
    obs.on_stage("pruning channels")
    taylor = (bundle.x_train, bundle.y_train, task.loss_fn(0.0)) if settings.importance == "taylor" else None
    outcome = prune_model(ctx.model, ckpt["arch"], ctx.example, settings.prune_ratio, settings.importance, taylor)
    if outcome.model is None:
        return outcome.to_json(), None
    pruned = outcome.model
    loss_fn, metric_fn = task.loss_fn(0.0), task.metric_fn()
    _, before_ft = evaluate(pruned, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    if settings.finetune_epochs:
        from compress.distill import distill_unsupported

        teacher = ctx.model if settings.distill else None
        why_not = distill_unsupported(task, bundle) if settings.distill else None
        if why_not:
            teacher = None
            obs.on_note(f"distillation skipped: {why_not}; plain fine-tuning")
        how = "distilling from the unpruned model" if teacher is not None else "plain"
        obs.on_stage(f"fine-tuning pruned model ({settings.finetune_epochs} epochs, {how})")
        epochs = settings.finetune_epochs
        outcome.finetune = finetune(
            pruned, task, bundle, dict(ckpt.get("params") or {}), epochs, ctx.device, settings.seed,
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
    lineage = record(ctx, "checkpoint", prune_steps(settings, info, outcome.finetune), settings.checkpoint,
                     {**ckpt, "metrics": metrics})
    new = make_checkpoint(
        task=task.name, arch=outcome.arch, model=pruned, preprocess=ckpt["preprocess"], data=ckpt["data"],
        metrics=metrics, params=ckpt.get("params") or {}, study=ckpt.get("study"), trial=ckpt.get("trial"),
        extra={"pruned_from": str(settings.checkpoint), "prune": info, "lineage": lineage},
    )
    path = save_checkpoint(ctx.work / "pruned.pt", new)
    model_from_checkpoint(load_checkpoint(path), str(path))  # must load back with weights_only and rebuild
    return info, path
