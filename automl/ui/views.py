"""Rich views that need no PyTorch (``automl trials``, the closing hints), so those commands start fast.

Only ``cli.py`` uses this module; library code never prints.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console


def elapsed(seconds: float) -> str:
    """``seconds`` as the user compares it with a wall clock: '42.1 s' or '3 min 05 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


def print_trials(summary: dict[str, Any], console: Console | None = None) -> None:
    """``automl trials``: a table where the terminal is wide; narrower, one block per trial, so the
    parameters and the reason wrap to the width instead of shrinking to a few characters."""
    from rich.markup import escape
    from rich.padding import Padding
    from rich.text import Text

    from automl.runtime.int8 import score_label
    from automl.study.trials import epochs_text, state_label, states_line, trials_table

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


def print_compress_next(report: dict[str, Any], console: Console | None = None) -> None:
    """The closing hint of ``automl compress``: the stable copy of the recommended file and what to run."""
    from rich.markup import escape

    console = console or Console(highlight=False)
    path = report.get("recommended_copy") or report["recommended"]
    console.print(f"best: [bold green]{escape(path)}[/] (a copy of {report['recommended_variant']})", soft_wrap=True)
    console.print(f"next: [bold]automl serve {escape(path)}[/]   or   [bold]automl predict {escape(path)} "
                  f"INPUT…[/]", soft_wrap=True)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
