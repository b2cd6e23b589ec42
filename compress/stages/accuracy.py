"""Stage ``accuracy`` (one-shot pipeline only): the test metric of every FP32 variant exported so far,
before quantization, which skips a pruned network that already lost more than ``--max-drop``."""

from __future__ import annotations

from compress.context import CompressContext
from compress.stages._registry import Stage, register_stage
from compress.verdict import Variant


@register_stage("accuracy", order=25)
class AccuracyStage(Stage):
    def applies(self, ctx: CompressContext) -> bool:
        return not ctx.chain  # a --search candidate is measured on validation by the search itself

    def run(self, ctx: CompressContext) -> list[Variant]:
        from compress.measure import measure_new

        measure_new(ctx)
        return []
