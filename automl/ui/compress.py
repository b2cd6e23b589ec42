"""Rich rendering of ``automl compress``: stage progress on stderr and the final tables (one-shot and
``--search``).

Only ``cli.py`` uses this module; library code never prints. The observer is a
``compress.context.CompressObserver`` by duck typing (``automl/`` never imports ``compress/``).
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

VERDICT_STYLE = {"kept": "green", "rejected": "red", "not faster": "yellow"}


class RichCompressObserver:
    """A spinner naming the current stage, a bar over fine-tuning epochs, and notes as they come."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console, transient=True,
            # Off where stderr is no terminal (a log, a pipe): Rich would end it with a blank line
            # there, which lands before an error line; notes are still printed.
            disable=not self.console.is_terminal,
        )
        self.stage = self.progress.add_task("starting", total=None, info="")
        self.epochs = self.progress.add_task("fine-tune", total=1, info="", visible=False)

    def __enter__(self) -> RichCompressObserver:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def on_stage(self, name: str) -> None:
        self.progress.update(self.stage, description=name)
        self.progress.update(self.epochs, visible=name.startswith("fine-tuning"))

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float]) -> None:
        self.progress.update(self.epochs, completed=epoch, total=epochs, visible=epoch < epochs,
                             info=f"val {record['val_metric']:.4f}  loss {record['train_loss']:.3f}")

    def on_note(self, message: str) -> None:
        self.console.print(f"[yellow]note:[/] {message}", emoji=False, highlight=False, soft_wrap=True)


def _size(n: int) -> str:
    return f"{n / 1024:.0f}K" if n < 1 << 20 else f"{n / (1 << 20):.1f}M"


def _ms(lat: dict[str, Any], batch: int, p95: bool = True) -> str:
    row = lat.get(f"b{batch}") or {}
    if not row:
        return "-"
    shown = f"{_num(row['p50'])}/{_num(row['p95'])}" if p95 else _num(row["p50"])
    return shown + ("?" if row.get("settled") is False else "")  # "?": the timing did not settle


def _num(ms: float) -> str:
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def print_compress_table(report: dict[str, Any], console: Console | None = None) -> None:
    """The variants table, why variants were not kept, the pruning summary and the recommended file."""
    console = console or Console()
    metric = report["metric"]
    base = report["baseline"]
    provider = report["variants"][0]["provider"].replace("ExecutionProvider", "")
    table = Table(title=f"{report['checkpoint']} on {provider}", title_justify="left", box=box.SIMPLE_HEAD)
    wide = console.width >= 110  # p95 beside p50 only where it fits
    lat = " ms p50/p95" if wide else " ms"
    for col in ("variant", "size", metric[:8] if wide else metric[:3], "drop", f"b1{lat}", f"b64{lat}", "vs fp32",
                "verdict"):
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right", no_wrap=True)
    table.add_row("pytorch", "", f"{base['metric_value']:.4f}", "", _ms(base["latency_ms"], 1, wide),
                  _ms(base["latency_ms"], 64, wide), "", "eager", style="dim")
    for v in report["variants"]:
        style = VERDICT_STYLE.get(v["verdict"], "")
        name = f"[bold]{v['name']}*[/]" if v["recommended"] else v["name"]
        speed = f"{v['speedup_vs_fp32']:.2f}x" if v.get("speedup_vs_fp32") else "-"
        size = f"{_size(v['size_bytes'])} {v['size_ratio']:.2f}x" if wide else _size(v["size_bytes"])
        table.add_row(name, size, f"{v['metric_value']:.4f}",
                      f"{v['drop']:+.2f}", _ms(v["latency_ms"], 1, wide), _ms(v["latency_ms"], 64, wide), speed,
                      f"[{style}]{v['verdict']}[/]")
    console.print(table)
    rows = [base["latency_ms"], *(v["latency_ms"] for v in report["variants"])]
    if any(r.get("settled") is False for lat in rows for r in lat.values() if isinstance(r, dict)):
        console.print("  ?: the timing did not settle (busy machine?); no speed-up is claimed from it", highlight=False)
    for v in report["variants"]:
        console.print(f"  {v['name']}: {v['file']}, {v['verdict']} ({v['reason']})", highlight=False, soft_wrap=True)
    drift = [f"{v['name']} {v['output_max_abs_diff']:.3g}" for v in report["variants"]
             if v.get("output_max_abs_diff") is not None]
    if drift:  # quantized outputs (an anomaly model's scores) against the FP32 network they were made from
        console.print(f"output parity vs FP32, max |difference| on the test split: {', '.join(drift)}",
                      highlight=False, soft_wrap=True)
    _print_int8_tuning(report, console)
    budget = report.get("latency_budget")
    if budget:
        t = budget["target"]
        console.print(f"latency budget {budget['max_latency_ms']:g} ms ({t['device']}, batch {t['batch']}, "
                      f"{t['threads']} thread(s)), as the search timed it:", highlight=False)
        for v in report["variants"]:
            verdict = "meets it" if v.get("meets_budget") else "over it"
            console.print(f"  {v['name']}: {v['target_latency_ms']:.4g} ms, {verdict}", highlight=False)
    if report.get("ensemble"):
        console.print(ensemble_line(report["ensemble"]), highlight=False, soft_wrap=True)
    p = report["prune"]
    if p.get("skipped"):
        console.print(f"pruning: skipped ({p['skipped']})")
    elif p.get("macs_after"):
        console.print(
            f"pruning: ratio {p['ratio']:g} ({p['importance']}), params {p['params_before']:,} -> "
            f"{p['params_after']:,}, MACs {p['macs_before']:,} -> {p['macs_after']:,} "
            f"({p['macs_reduction']:.2f}x fewer), fine-tuned {p['finetune'].get('epochs', 0)} epochs -> {p['path']}",
            soft_wrap=True,  # piped output is 80 columns wide: a path split over two lines cannot be copied
        )
    console.print(f"report: {report['out']}/compress_report.json", soft_wrap=True)
    console.print(f"recommended: [bold green]{report['recommended']}[/] ({report['recommended_variant']})",
                  soft_wrap=True)


def _print_int8_tuning(report: dict[str, Any], console: Console) -> None:
    """Per INT8 variant: the calibration recipe chosen on validation, each layer's sensitivity and
    the layers kept FP32; and the CPU's instruction sets (they decide what INT8 can gain)."""
    feats = report.get("hardware", {}).get("cpu_features")
    if feats:
        has = [k for k, v in feats.items() if v]
        vnni = feats.get("avx512_vnni") or feats.get("avx_vnni") or feats.get("amx_int8")
        console.print("cpu instruction sets: " + (" ".join(has) or "none of AVX2/AVX-512/VNNI")
                      + ("" if vnni else " (no VNNI: INT8 dot products without it, weights in 7 bits)"),
                      highlight=False)
    for name, t in (report.get("quantization", {}).get("int8_tuning") or {}).items():
        recipes = ", ".join(f"{r['calibration']}/{'ch' if r['per_channel'] else 'tensor'} "
                            + (f"{r['val_drop']:+.2f}" if "val_drop" in r else "failed") for r in t["recipes"])
        console.print(f"  {name}: calibration {t['calibration']} {'per-channel' if t['per_channel'] else 'per-tensor'}"
                      f" chosen on validation (drops: {recipes})", highlight=False)
        if t.get("sensitivity"):
            layers = ", ".join(f"{s['node']} {s['val_drop']:+.2f}" for s in t["sensitivity"])
            console.print(f"    sensitivity (val drop with that layer alone INT8): {layers}", highlight=False)
            kept = ", ".join(t["kept_fp32"]) or "none"
            console.print(f"    kept FP32: {kept}; val drop {t['plain_int8_val_drop']:.2f} -> {t['val_drop']:.2f}"
                          f"{'' if t['within_max_drop'] else ' (still over --max-drop)'}", highlight=False)


def print_search_table(report: dict[str, Any], console: Console | None = None) -> None:
    """``automl compress --search``: the Pareto front (val/test metric, latency b1/b64, size) and the pick."""
    console = console or Console()
    metric = report["metric"]
    base = report["baseline"]
    table = Table(title=f"Pareto front: {len(report['front'])} of {report['n_trials']} trials ({report['study']})",
                  title_justify="left",
                  box=box.SIMPLE_HEAD)
    for col in ("trial", "recipe", f"val {metric[:3]}", f"test {metric[:3]}", "b1 ms", "b64 ms", "size"):
        table.add_column(col, justify="left" if col in ("trial", "recipe") else "right", overflow="fold")
    table.add_row("original", "", f"{base[f'val_{metric}']:.4f}", f"{base[f'test_{metric}']:.4f}", "", "", "",
                  style="dim")
    for r in report["front"]:
        rec = r["recipe"] or {}
        parts = [f"prune {rec.get('prune_ratio', 0):g}"]
        if rec.get("prune_ratio"):
            parts.append(f"{rec.get('importance')} ft{rec.get('finetune_epochs')}"
                         + (" distill" if rec.get("distill") else ""))
        parts.append(r["variant"] + (f" {rec.get('calibration')}" if r["variant"] == "int8" else ""))
        name = f"[bold]{r['trial']}*[/]" if r["recommended"] else str(r["trial"])
        table.add_row(name, ", ".join(parts), f"{r[f'val_{metric}']:.4f}", f"{r[f'test_{metric}']:.4f}",
                      _num(r["latency_b1_ms"]), _num(r["latency_b64_ms"]), _size(r["size_bytes"]))
    console.print(table)
    for n in report["notes"]:
        console.print(f"note: {n}", highlight=False, soft_wrap=True)
    console.print(f"report: {report['report_path']}", highlight=False, soft_wrap=True)
    if report["recommended"]:
        console.print(f"recommended: [bold green]{report['recommended']}[/] ({report['recommendation']})",
                      soft_wrap=True)


def ensemble_line(section: dict[str, Any]) -> str:
    """One line for the compress table: the ensemble's latency against its best member's."""
    best = section["best_member"]
    who = f"trial {best['trial']}, {best['family']}" if best.get("trial") is not None else f"member {best['index']}"
    parts = []
    for b, r in section["ratio_p50"].items():
        e, m = section["latency_ms"]["ensemble"][b]["p50"], section["latency_ms"]["best_member"][b]["p50"]
        parts.append(f"{b} {e:.3g} ms vs {m:.3g} ms ({r:.2f}x)")
    line = f"ensemble of {section['members']} members against its best member ({who}), p50: " + ", ".join(parts)
    t = section.get("target_latency_ms")
    if t:
        line += f"; on the study's target {t['ensemble']:.3g} ms vs {t['best_member']:.3g} ms"
    return line
