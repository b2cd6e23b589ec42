"""``automl predict``: the predictions table on stdout, the run's notes on stderr.

Only ``cli.py`` uses this module; library code never prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_notes(result: dict[str, Any]) -> None:
    """What the run should say once (colour images made grey, resized ones) on stderr; stdout stays the result."""
    console = Console(stderr=True, highlight=False)
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True, emoji=False, markup=True)


def print_predictions(result: dict[str, Any], console: Console | None = None) -> None:
    """The table of a ``predict`` result on stdout."""
    (console or Console()).print(predictions_table(result))


def predictions_table(result: dict[str, Any]) -> Table:
    """A Rich table of a ``predict`` result (for the CLI to print)."""
    rows = result["predictions"]
    table = Table(title=f"{Path(result['model']).name} ({result['task']}, {result['format']})", show_edge=False)
    table.add_column("input", overflow="fold")
    keys = [k for k in rows[0] if k != "input"] if rows else []
    if rows and "probabilities" not in rows[0] and "value" not in rows[0] and "values" not in rows[0]:
        for k in keys:  # a task's own fields (anomaly: score, is_anomaly), as it formats them
            table.add_column(k, justify="right")
        for r in rows:
            table.add_row(r["input"], *(f"{v:.6g}" if isinstance(v, float) else str(v) for v in map(r.get, keys)))
    elif rows and "value" not in rows[0] and "values" not in rows[0]:
        table.add_column("label")
        table.add_column("probability", justify="right")
        table.add_column("top-k")
        for r in rows:
            top = "  ".join(f"{p['label']} {p['probability']:.3f}" for p in r["probabilities"])
            table.add_row(r["input"], str(r["label"]), f"{r['probability']:.4f}", top)
    else:
        table.add_column("value", justify="right")
        for r in rows:
            v = r.get("value", r.get("values"))
            table.add_row(r["input"], f"{v:.6g}" if isinstance(v, float) else str(v))
    return table
