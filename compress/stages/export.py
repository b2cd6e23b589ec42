"""Stage ``export``: the original network to an FP32 ONNX file, checked against PyTorch on real test
inputs (``automl.runtime.export``, automl's one exporter). ``export_network`` is also how the prune
stage writes the pruned network."""

from __future__ import annotations

from compress.context import CompressContext, Network
from compress.stages._registry import Stage, register_stage
from compress.verdict import Variant


def export_network(ctx: CompressContext, net: Network) -> Variant:
    """Export ``net`` to ``<ctx.work>/<net.prefix>.onnx`` with its metadata; its FP32 variant."""
    from automl.runtime.export import OPSET, export_checked
    from compress.lineage import onnx_meta

    if net.stage:
        ctx.obs.on_stage(net.stage)
    steps = [{"step": "export", "settings": {"opset": OPSET, "parity_tol": ctx.settings.parity_tol}}]
    exp = export_checked(net.module, ctx.example, ctx.work / f"{net.prefix}.onnx",
                         onnx_meta(ctx, net, net.meta_kind, net.src, steps), ctx.x_check,
                         ctx.settings.parity_tol)
    ctx.exported.add(net.name)
    return Variant(net.name, "fp32", net.name, exp["path"], parity_max_abs_diff=exp["parity_max_abs_diff"])


@register_stage("export", order=5)
class ExportStage(Stage):
    def applies(self, ctx: CompressContext) -> bool:
        # a --search candidate that prunes exports only its pruned network (in the prune stage)
        return not (ctx.chain and ctx.settings.prune_ratio > 0)

    def run(self, ctx: CompressContext) -> list[Variant]:
        return [export_network(ctx, net) for net in ctx.networks if net.name not in ctx.exported]
