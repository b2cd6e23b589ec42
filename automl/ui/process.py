"""How the command-line process ends: click's exception classes (its own and Typer's vendored copy),
whether this process was started for the command, and ending it without the interpreter's slow
teardown. ``cli.py`` decides the exit code; this module only carries it out. Imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click


def click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(exit, abort, usage-error) classes of click and of the click copy Typer >= 0.20 vendors."""
    import click
    import typer

    exits: list[type] = [click.exceptions.Exit, typer.Exit]
    aborts: list[type] = [click.exceptions.Abort]
    errors: list[type] = [click.ClickException]
    try:
        import typer.exceptions as texc
        from typer._click import exceptions as vendored  # type: ignore[import-not-found]

        errors.append(vendored.ClickException)
        aborts += [getattr(texc, "Abort", click.exceptions.Abort)]
    except ImportError:
        pass
    return tuple(exits), tuple(aborts), tuple(errors)


def is_the_process(script: str) -> bool:
    """Whether this process was started to run the command: the ``automl`` console script, ``python
    cli.py`` or ``python -m cli`` (not pytest or another program that calls ``main``); ``script``:
    the path of cli.py."""
    entry = getattr(sys.modules.get("__main__"), "__file__", None)
    if not entry:
        return False
    return os.path.basename(entry) in ("automl", "automl.exe") or os.path.realpath(entry) == os.path.realpath(script)


def exit_now(code: int) -> None:
    """End the process at once, once output is flushed, other threads are done and the exit
    handlers have run. Freeing PyTorch's and Optuna's modules one by one at interpreter shutdown took
    3-5 s after the work was done on a loaded 2-core machine (0.2 s this way): a --timeout search
    would end seconds past its deadline. Only for a real process (``main``), never in-process."""
    import atexit
    import contextlib
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)


def print_usage_error(exc: click.ClickException) -> None:
    """A usage error (click's) as one line on stderr, with the command's ``--help`` to see."""
    from automl.ui.plain import stderr_console

    ctx = getattr(exc, "ctx", None)
    cmd = ctx.command_path if ctx is not None else ""
    hint = f" (see '{cmd} --help')" if cmd else ""
    stderr_console().print(f"[bold red]error:[/] {exc.format_message()}{hint}", emoji=False, soft_wrap=True)
