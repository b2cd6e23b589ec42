"""Stage ``export``: every network of the run (the original, the pruned one) to an FP32 ONNX file,
checked against PyTorch on real test inputs (``automl.runtime.export``, automl's one exporter)."""

from __future__ import annotations

from compress.context import CompressContext
from compress.stages._registry import Stage, register_stage
from compress.verdict import Variant


@register_stage("export", order=20)
class ExportStage(Stage):
    def run(self, ctx: CompressContext) -> list[Variant]:
        from automl.runtime.export import export_checked
        from automl.runtime.onnx_meta import metadata_from_checkpoint

        made = []
        for net in ctx.networks:
            if net.name in ctx.exported:
                continue
            if net.stage:
                ctx.obs.on_stage(net.stage)
            exp = export_checked(net.module, ctx.example, ctx.work / f"{net.prefix}.onnx",
                                 metadata_from_checkpoint(net.ckpt, net.meta_kind, net.src), ctx.x_check,
                                 ctx.settings.parity_tol)
            ctx.exported.add(net.name)
            made.append(Variant(net.name, "fp32", net.name, exp["path"],
                                parity_max_abs_diff=exp["parity_max_abs_diff"]))
        return made
