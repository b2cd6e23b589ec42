"""Rich rendering for the command line: live search progress and summaries.

Only ``cli.py`` uses this module; library code never prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from automl.search.objective import SearchObserver
from automl.ui.views import elapsed

if TYPE_CHECKING:
    import optuna

    from automl.study import SearchResult, WorkerResult

MAX_ROWS = 12


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


class RichSearchObserver(SearchObserver):
    """A progress bar over trials, one over the current trial's epochs, and a table of trials."""

    def __init__(self, total: int | None, epochs: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console,
        )
        self.trials_task = self.progress.add_task("trials", total=total, info="")
        self.epoch_task = self.progress.add_task("epochs", total=epochs, info="", visible=False)
        self.rows: list[tuple[str, ...]] = []
        self.best: float | None = None
        self.maximize = True
        self.metric = "value"
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> RichSearchObserver:
        # The live display starts with the first trial, so an error while loading data stays one line.
        self.started = False
        return self

    def _start(self) -> None:
        if not getattr(self, "started", False):
            self.live.__enter__()
            self.started = True

    def __exit__(self, *exc: Any) -> None:
        if getattr(self, "started", False):
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def _table(self) -> Table:
        table = Table(title="trials", expand=False, show_edge=False, pad_edge=False)
        for col in ("#", "state", "value", "epochs", "params"):
            table.add_column(col, overflow="fold" if col == "params" else "ellipsis")
        for row in self.rows[-MAX_ROWS:]:
            table.add_row(*row)
        return table

    def _render(self) -> Group:
        return Group(self.progress, self._table())

    def set_direction(self, direction: str, metric: str) -> None:
        self.maximize = direction == "maximize"
        self.metric = metric

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None:
        self._start()
        self.progress.reset(self.epoch_task, visible=True, description=f"trial {number}", info="")

    def on_epoch(self, number: int, epoch: int, epochs: int, record: dict[str, float]) -> None:
        self.progress.update(
            self.epoch_task, completed=epoch, total=epochs,
            info=f"val {record['val_metric']:.4f}  loss {record['train_loss']:.3f}",
        )

    def on_note(self, message: str) -> None:
        self.console.print(f"[yellow]note:[/] {message}", soft_wrap=True, highlight=False)

    def on_trial_end(self, trial: optuna.trial.FrozenTrial) -> None:
        from automl.search.moo import first_value

        value_ = first_value(trial)  # the metric (trial.value raises in a multi-objective study)
        state = trial.state.name.lower()
        value = "" if value_ is None else f"{value_:.4f}"
        style = {"complete": "green", "pruned": "yellow", "fail": "red"}.get(state, "")
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        from automl.study.trials import folds_of, state_label

        epochs = str(trial.user_attrs.get("epochs", ""))
        folds = folds_of(trial.user_attrs.get("history") or [])
        if epochs and folds and folds > 1:
            epochs += f" ({folds} folds)"
        label = state_label(state, trial.user_attrs.get("stopped"))  # "complete (deadline)": kept at its last epoch
        self.rows.append((str(trial.number), f"[{style}]{label}[/]" if style else label, value, epochs, params))
        # Only complete trials compete (Optuna 5 gives a pruned trial its last intermediate value).
        better = state == "complete" and value_ is not None and (
            self.best is None or (value_ > self.best if self.maximize else value_ < self.best)
        )
        if better:
            self.best = value_
        info = f"best {self.metric} {self.best:.4f}" if self.best is not None else ""
        self.progress.update(self.trials_task, advance=1, info=info)
        self.progress.update(self.epoch_task, visible=False)
        self.live.update(self._render())


def leaderboard_table(board: dict[str, Any]) -> Table:
    """Each model family's best trial and the classic reference, best first."""
    metric = board.get("metric", "value")
    table = Table(title=f"leaderboard ({metric}, {'higher' if board.get('direction') == 'maximize' else 'lower'} "
                        f"is better)")
    for col in ("model", "trials", "best trial", f"val {metric}", f"test {metric}"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}"

    for r in board["rows"]:
        if r["kind"] == "reference":
            table.add_row(escape(f"reference: {r.get('model', '')}"), "-", "-", num(r["val"]), num(r["test"]),
                          style="dim")
        else:
            table.add_row(escape(str(r["name"])), f"{r['complete']}/{r['trials']}",
                          "-" if r["best_trial"] is None else str(r["best_trial"]), num(r["val"]), num(r["test"]))
    return table


def counts_text(c: dict[str, int]) -> str:
    """``5 (3 complete, 1 pruned, 0 failed, 1 waiting)``: every state that adds up to the total (a
    queued trial left waiting, one still running) is named, so the parts sum to the whole."""
    parts = [f"{c['complete']} complete", f"{c['pruned']} pruned", f"{c['failed']} failed"]
    running = c.get("running", 0)
    waiting = c["total"] - c["complete"] - c["pruned"] - c["failed"] - running
    parts += [f"{n} {what}" for n, what in ((running, "running"), (waiting, "waiting")) if n > 0]
    return f"{c['total']} ({', '.join(parts)})"


def print_search_summary(result: SearchResult, console: Console | None = None) -> None:
    """The end-of-search summary on stdout."""
    console = console or Console()
    c = result.counts
    console.print()  # piped, stderr's last progress line and this title would share a line
    table = Table(title=f"study '{result.study}'", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("trials", counts_text(c))
    table.add_row("best trial", str(result.best_trial))
    table.add_row(f"val {result.metric}", f"{result.best_value:.4f}")
    table.add_row(f"test {result.metric}", f"{result.test_metric:.4f}")
    table.add_row("params", ", ".join(f"{k}={_fmt(v)}" for k, v in result.params.items()))
    table.add_row("device", result.device)
    table.add_row("elapsed", elapsed(result.seconds))
    table.add_row("best.pt", result.best_pt)
    console.print(table)
    board = getattr(result, "leaderboard", None) or {}
    if board.get("rows"):
        console.print(leaderboard_table(board))
    for note in getattr(result, "notes", None) or []:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True, highlight=False, emoji=False)
    console.print(f"next: [bold]automl compress {escape(result.best_pt)}[/]", soft_wrap=True)
    from pathlib import Path

    from automl.report import report_command

    out_dir = Path(result.best_pt).parent.parent  # best.pt lives at <out>/<study>/best.pt
    console.print(f"report: [bold]{escape(report_command(result.study, result.storage, out_dir))}[/]", soft_wrap=True)



def print_worker_summary(result: WorkerResult, console: Console | None = None) -> None:
    """The end-of-run summary of ``automl worker`` on stdout."""
    c = result.counts
    table = Table(title=f"worker {result.worker} on study '{result.study}'", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("this worker", f"{result.trials_run} trials, {result.retries_run} retried for dead workers")
    table.add_row("study", f"{c['total']} trials ({c['complete']} complete, {c['pruned']} pruned, "
                           f"{c['failed']} failed, {c['running']} running)")
    if result.best_trial is not None:
        table.add_row("best trial", f"{result.best_trial} (val {result.metric} {result.best_value:.4f})")
    table.add_row("best.pt", result.best_pt or "not written here (the best trial's weights are on another machine)")
    table.add_row("seconds", f"{result.seconds:.1f}")
    (console or Console()).print(table)
