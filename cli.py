"""automl command line: thin Typer commands that call the library, print, and set exit codes.

Only this module prints or exits. Any AutomlError becomes one red line on stderr and exit code 1;
``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from automl.exceptions import AutomlError

app = typer.Typer(
    name="automl",
    help="Find a good network with Optuna, shrink it (pruning, INT8/FP16), ship it with ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])
_state = {"verbose": os.environ.get("AUTOML_VERBOSE", "") not in ("", "0")}


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one readable error line on stderr and return the Exit to raise."""
    _stderr_console().print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True, emoji=False)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn library errors into one line + exit 1 (the traceback only with --verbose)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except AutomlError as exc:
            if _state["verbose"]:
                raise
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as exc:  # an unexpected bug: still one line unless --verbose
            if _state["verbose"]:
                raise
            raise fail(f"{exc.__class__.__name__}: {exc} (run with --verbose for the traceback)") from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors.")] = False,
) -> None:
    """automl: search -> compress -> serve."""
    if verbose:
        _state["verbose"] = True


def _task_help() -> str:
    from automl.tasks import list_tasks

    return "Task to search: " + " | ".join(list_tasks()) + "."


@app.command()
@handle_errors
def search(
    task: Annotated[str, typer.Option("--task", help=_task_help())] = "image",
    data: Annotated[
        str | None,
        typer.Option(
            help="Data: 'digits' (built in), cifar10 | mnist | fashion-mnist (torchvision, needs internet), "
            "or an image folder (DIR/train/<class>/* with optional DIR/test/<class>/*, or DIR/<class>/*)."
        ),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Target column (tabular data).")] = None,
    problem: Annotated[
        str | None, typer.Option(help="classification | regression (tabular; default: inferred from the target).")
    ] = None,
    space: Annotated[
        str | None, typer.Option(help="Search-space YAML file, or a built-in name (image, image-full).")
    ] = None,
    trials: Annotated[int | None, typer.Option(help="Number of trials to add to the study.")] = 20,
    timeout: Annotated[float | None, typer.Option(help="Stop starting new trials after this many seconds.")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs a trial may train.")] = 10,
    sampler: Annotated[str, typer.Option(help="Optuna sampler: tpe | random | cmaes | gp | nsga2 | grid.")] = "tpe",
    pruner: Annotated[
        str, typer.Option(help="Trial pruner (stops bad trials early): median | hyperband | sha | none.")
    ] = "median",
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: sqlite:///<out>/automl.db).")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: <task>-<data>); an existing study resumes.")] = None,
    out: Annotated[str, typer.Option(help="Output folder for the study database and runs/<study>/best.pt.")] = "runs",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the data split, the sampler and each trial.")] = 0,
    image_size: Annotated[
        int | None, typer.Option(help="Resize folder images to this square size (default: the first image's size).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
) -> None:
    """Search hyperparameters with Optuna and save the best model as runs/<study>/best.pt.

    Trials train on the training split and are judged on the validation split; the trial pruner
    stops bad trials early. The best trial is evaluated once on the test split. Running again with
    the same --study (and storage) resumes the study and adds trials.
    """
    from automl.study import SearchSettings, run_search
    from automl.tasks import get_task

    get_task(task)  # unknown names fail before anything heavy happens
    settings = SearchSettings(
        task=task, data=data, target=target, space=space, trials=trials, timeout=timeout, epochs=epochs,
        sampler=sampler, pruner=pruner, storage=storage, study=study, out=out, device=device, seed=seed,
        image_size=image_size, problem=problem,
    )
    from automl.ui import RichSearchObserver

    with RichSearchObserver(total=trials, epochs=epochs) as observer:
        result = run_search(settings, observer=observer)
    if as_json:
        print_json(result.to_json())
        return
    from automl.ui import print_search_summary

    print_search_summary(result)


# --- compress (issue 3) ---

# --- serve / predict (issue 4) ---

# --- worker (issue 6) ---

# --- report / trials / dashboard (issue 7) ---


def main() -> None:
    """Console-script entry point: usage errors become one line too."""
    import click

    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _stderr_console().print("[bold red]error:[/] aborted")
        sys.exit(130)
    except click.ClickException as exc:
        cmd = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            cmd = ctx.command_path
        hint = f" (see '{cmd} --help')" if cmd else ""
        _stderr_console().print(f"[bold red]error:[/] {exc.format_message()}{hint}", emoji=False)
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
