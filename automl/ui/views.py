"""Rich views that need no PyTorch (``automl trials``, the closing hints), so those commands start fast.

Only ``cli.py`` uses this module; library code never prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from automl.report import ReportResult


def elapsed(seconds: float) -> str:
    """``seconds`` as the user compares it with a wall clock: '42.1 s' or '3 min 05 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


def print_compress_next(report: dict[str, Any], console: Console | None = None) -> None:
    """The closing hint of ``automl compress``: the stable copy of the recommended file and what to run."""
    from rich.markup import escape

    console = console or Console(highlight=False)
    path = report.get("recommended_copy") or report["recommended"]
    console.print(f"best: [bold green]{escape(path)}[/] (a copy of {report['recommended_variant']})", soft_wrap=True)
    console.print(f"next: [bold]automl serve {escape(path)}[/]   or   [bold]automl predict {escape(path)} "
                  f"INPUT…[/]", soft_wrap=True)



def print_report_written(result: ReportResult, console: Console | None = None) -> None:
    """``automl report``: where the HTML file is, its size, the plots left out and why, and its URL."""
    from pathlib import Path

    from rich.markup import escape

    console = console or Console(highlight=False)
    size = f"{result.bytes / 1e6:.1f} MB, {len(result.figures)} plots"
    console.print(f"report: [bold]{escape(result.path)}[/] ({size})", soft_wrap=True)
    for key, why in result.skipped.items():
        console.print(f"  [dim]not drawn: {key}: {escape(why)}[/]")
    console.print(f"open: {Path(result.path).resolve().as_uri()}", soft_wrap=True, markup=False)
