"""``automl trials``: the trials table (wide terminals), one block per trial (narrow ones), and the
Pareto-front table. Rich is imported here; the rows come from ``automl.study.trials``.

Only ``cli.py`` uses this module; library code never prints.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from automl.study.trials import epochs_text, state_label, states_line


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def trials_table(summary: dict[str, Any]) -> Table:
    """A Rich table of ``trials_summary`` output (the CLI prints it; nothing is printed here)."""
    from automl.runtime.int8 import score_label

    metric = summary.get("metric") or "value"
    states = states_line(summary) or "no trials"
    best = f", best #{summary['best_trial']}" if summary["best_trial"] is not None else ""
    table = Table(title=f"study '{escape(summary['study'])}': {states}{best}", title_justify="left", expand=True)
    columns: list[tuple[str, dict[str, Any]]] = [
        ("#", {"justify": "right"}), ("state", {}), (metric, {"justify": "right"}), ("duration", {"justify": "right"}),
        ("epochs", {"justify": "right"}), ("params", {"overflow": "fold", "ratio": 5}),
        ("reason", {"overflow": "fold", "ratio": 2, "min_width": 12}),
    ]
    for col, kw in columns:
        table.add_column(col, **kw)
    style = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan"}
    for t in summary["trials"]:
        if t["value"] is not None:
            value = f"{t['value']:.4f}"
            label = score_label(t.get("score"))  # --score: the value is the quantized model's
            if label:
                value += f" [dim]({label})[/]"
        elif t["last_value"] is not None:
            value = f"[dim]({t['last_value']:.4f})[/]"  # where a pruned trial stood when stopped
        else:
            value = ""
        epochs = "" if t["epochs"] is None else str(t["epochs"])
        if t.get("folds", 0) and t["folds"] > 1 and epochs:
            epochs += f" ({t['folds']} folds)"
        if t["pruned_at_epoch"] is not None:
            epochs = f"{epochs} [yellow](stopped)[/]" if epochs else f"stopped at {t['pruned_at_epoch']}"
        state, label = t["state"], state_label(t["state"], t.get("stopped"))
        table.add_row(
            str(t["number"]), f"[{style[state]}]{label}[/]" if state in style else label, value,
            "" if t["duration"] is None else f"{t['duration']:.1f} s", epochs,
            escape(", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())), escape(t["reason"] or ""),
        )
    return table


def print_trials(summary: dict[str, Any], console: Console | None = None) -> None:
    """``automl trials``: a table where the terminal is wide; narrower, one block per trial, so the
    parameters and the reason wrap to the width instead of shrinking to a few characters."""
    from rich.padding import Padding
    from rich.text import Text

    from automl.runtime.int8 import score_label

    console = console or Console()
    if console.width >= WIDE_TRIALS:
        console.print(trials_table(summary))
        return
    metric = summary.get("metric") or "value"
    states = states_line(summary) or "no trials"
    best = f", best #{summary['best_trial']}" if summary["best_trial"] is not None else ""
    console.print(f"study '{escape(summary['study'])}': {states}{best}", soft_wrap=False, highlight=False)
    for t in summary["trials"]:
        head = [f"#{t['number']}", state_label(t["state"], t.get("stopped"))]
        if t["value"] is not None:
            head.append(f"{metric} {t['value']:.4f}")
            label = score_label(t.get("score"))  # --score: the value is the quantized model's
            if label:
                head.append(f"({label})")
        elif t.get("last_value") is not None:
            head.append(f"({metric} {t['last_value']:.4f} when stopped)")
        if t["duration"] is not None:
            head.append(f"{t['duration']:.1f} s")
        if t["epochs"] is not None:
            head.append(epochs_text(t["epochs"], t.get("folds")))
        if t.get("pruned_at_epoch") is not None:
            head.append(f"stopped at epoch {t['pruned_at_epoch']}")
        console.print(Text("  ".join(head), style=_STATE_STYLE.get(t["state"], "")))
        params = ", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())
        if params:
            console.print(Padding(Text(f"params: {params}"), (0, 0, 0, 4), expand=False))
        if t.get("reason"):
            console.print(Padding(Text(f"reason: {t['reason']}"), (0, 0, 0, 4), expand=False))


WIDE_TRIALS = 120  # columns from which the trials table keeps params and reason readable
_STATE_STYLE = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan"}


#: column titles (with units) of cost objectives in the Pareto table
OBJECTIVE_COLUMNS = {"latency": "latency ms", "size": "ONNX bytes", "params": "weights"}


def pareto_table(summary: dict[str, Any]) -> Table:
    """A Rich table of ``pareto_summary`` output: one row per front member, its objectives and figures."""
    objectives = summary["objectives"]
    goals = ", ".join(f"{o} ({d[:3]})" for o, d in zip(objectives, summary["directions"], strict=True))
    table = Table(title=f"study '{escape(summary['study'])}': Pareto front of {summary['front_size']} trials "
                        f"({goals})", title_justify="left", expand=True)
    table.add_column("#", justify="right")
    for name in objectives:
        table.add_column(OBJECTIVE_COLUMNS.get(name, name), justify="right")
    figures = [(o, col, key) for o, col, key in (("latency", "latency ms", "latency_ms"), ("size", "ONNX bytes",
               "onnx_bytes"), ("params", "weights", "params")) if o not in objectives]  # not shown twice
    for _, col, _ in figures:
        table.add_column(col, justify="right")
    table.add_column("params", overflow="fold", ratio=5)
    for t in summary["trials"]:
        costs = t.get("costs") or {}
        table.add_row(
            str(t["number"]), *(_short(t["objectives"].get(o)) for o in objectives),
            *(_short(costs.get(key, "")) for _, _, key in figures),
            escape(", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())),
        )
    return table


def print_pareto(summary: dict[str, Any], console: Console | None = None) -> None:
    """``automl trials --pareto``: the front's table on stdout."""
    (console or Console()).print(pareto_table(summary))
