"""``automl serve`` and ``automl dashboard``: what is listening where, and the warnings about it.

The URLs go to stdout (a script reads them); status lines and warnings to stderr. Only ``cli.py``
uses this module; library code never prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from automl.study.dashboard import Dashboard

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_api_key_warning() -> None:
    stderr_console().print("[yellow]warning:[/] --api-key on the command line is visible to every user "
                           "(ps, shell history); set AUTOML_API_KEY in the environment instead")


def print_serving(info: dict[str, Any]) -> None:
    """The line that says the server is up: model, task, classes, variant, provider and URL."""
    stderr_console().print(
        f"[bold green]serving[/] {info['model']} ({info['task']}, {info['classes']} classes, {info['variant']}, "
        f"{info['provider']}) on [bold]{info['url']}[/]  (Ctrl-C to stop)", soft_wrap=True, emoji=False,
    )


def print_stopped(stopped_by: str | None) -> None:
    stderr_console().print(f"stopped{f' by {stopped_by}' if stopped_by else ''}; requests in flight were answered")


def print_dashboard(board: Dashboard, host: str, study: str | None, as_json: bool) -> None:
    """``automl dashboard`` once listening: its URL and each study's page (stdout, unless ``as_json``
    printed them), then, on stderr, a warning when it listens beyond this machine, and how to stop it."""
    if not as_json:
        console = Console(highlight=False)
        console.print(f"optuna-dashboard: {board.url}", soft_wrap=True, markup=False)
        for name in [study] if study else board.studies:
            console.print(f"  {name}: {board.study_url(name)}", soft_wrap=True, markup=False)
    err = stderr_console()
    if host not in LOCAL_HOSTS:
        err.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach it can read and edit the studies")
    err.print("Ctrl+C stops the dashboard")
