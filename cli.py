"""automl command line: thin Typer commands that call the library, print, and set exit codes.

Only this module prints or exits. Any AutomlError becomes one red line on stderr and exit code 1;
``--verbose`` shows the traceback instead. Each command reads its options, makes one library call
and one ``automl.ui`` call; the longer option texts live in ``automl.ui.help``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from automl.exceptions import EXIT_INTERRUPTED, AutomlError, exit_code
from automl.ui import help as h
from automl.ui import process
from automl.ui.plain import print_json, stderr_console

app = typer.Typer(
    name="automl",
    help="Find a good network with Optuna, shrink it (pruning, INT8/FP16), ship it with ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])
h.plain_help_style()
_state = {"verbose": os.environ.get("AUTOML_VERBOSE", "") not in ("", "0")}
Json = Annotated[bool, typer.Option("--json", help=h.JSON)]
S, C, V, W = h.SEARCH, h.COMPRESS, h.SERVE, h.WORKER  # the longer option texts, by command


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one readable error line on stderr and return the Exit to raise."""
    from rich.markup import escape

    # escaped: a message may hold brackets that are text ("pip install 'automl[mlflow]'"), not markup
    stderr_console().print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True, emoji=False)
    return typer.Exit(code)


def _message(exc: BaseException) -> str:
    """The error's line, with the notes the library added while it ended the command (a cleanup that failed)."""
    return "; ".join([str(exc), *getattr(exc, "__notes__", ())])


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
            raise fail(_message(exc), exit_code(exc)) from None
        except KeyboardInterrupt as exc:
            raise fail("interrupted", exit_code(exc)) from None
        except Exception as exc:  # an unexpected bug: still one line unless --verbose
            if _state["verbose"]:
                raise
            raise fail(f"{exc.__class__.__name__}: {exc} (run with --verbose for the traceback)") from None

    wrapper.__doc__ = h.reflow(fn.__doc__)
    return wrapper  # type: ignore[return-value]


def _print_version(value: bool) -> None:
    if value:
        from automl import __version__

        sys.stdout.write(f"automl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """automl: search -> compress -> serve."""
    if verbose:
        _state["verbose"] = True


def _alias(name: str, value: Any, old_name: str, old_value: Any, default: Any) -> Any:
    """The value of an option that also answers to its old, hidden spelling."""
    if old_value is None:
        return value
    if value != default and value != old_value:
        raise fail(f"{name} and {old_name} (its old name) disagree: {value!r} vs {old_value!r}; pass one", 2)
    return old_value


@app.command()
@handle_errors
def search(
    task: Annotated[str, typer.Option("--task", help=h.task_help())] = "image",
    data: Annotated[str | None, typer.Option(help=S["data"])] = None,
    target: Annotated[str | None, typer.Option(help=S["target"])] = None,
    problem: Annotated[str | None, typer.Option(help=S["problem"])] = None,
    metric: Annotated[str | None, typer.Option(help=S["metric"])] = None,
    class_weight: Annotated[str, typer.Option(help=S["class_weight"])] = "none",
    categorical: Annotated[str | None, typer.Option(help=S["categorical"])] = None,
    numeric: Annotated[str | None, typer.Option(help=S["numeric"])] = None,
    test_data: Annotated[str | None, typer.Option(help=S["test_data"])] = None,
    normal: Annotated[str | None, typer.Option(help="anomaly task: the label value(s) or image class(es) that are "
                                                    "normal, comma-separated (the others are anomalies)")] = None,
    contamination: Annotated[float | None, typer.Option(help="anomaly task without labels: the expected share of "
                                                             "anomalies, in (0, 0.5); the threshold flags that share "
                                                             "of held-out rows (default 0.01)")] = None,
    cv: Annotated[int | None, typer.Option(help=S["cv"])] = None,
    space: Annotated[str | None, typer.Option(help=S["space"])] = None,
    trials: Annotated[int | None, typer.Option(help=S["trials"])] = None,
    timeout: Annotated[float | None, typer.Option(help=S["timeout"])] = None,
    epochs: Annotated[int | None, typer.Option(help=S["epochs"])] = None,
    sampler: Annotated[str, typer.Option(help=h.sampler_help())] = "tpe",
    pruner: Annotated[str, typer.Option(help=h.pruner_help())] = "median",
    objectives: Annotated[str | None, typer.Option(help=S["objectives"])] = None,
    save_front: Annotated[bool, typer.Option("--save-front", help=S["save_front"])] = False,
    no_ensemble: Annotated[bool, typer.Option("--no-ensemble", help=S["no_ensemble"])] = False,
    storage: Annotated[str | None, typer.Option(help=S["storage"])] = None,
    study: Annotated[str | None, typer.Option(help=S["study"])] = None,
    out_dir: Annotated[str, typer.Option(help=S["out_dir"])] = "runs",
    out_old: Annotated[str | None, typer.Option("--out", hidden=True, help=h.OUT_OLD)] = None,
    device: Annotated[str, typer.Option(help=h.DEVICE)] = "auto",
    seed: Annotated[int, typer.Option(help=S["seed"])] = 0,
    image_size: Annotated[int | None, typer.Option(help=S["image_size"])] = None,
    jobs: Annotated[int, typer.Option(help=S["jobs"])] = 1,
    heartbeat: Annotated[int, typer.Option(help=S["heartbeat"])] = 10,
    grace: Annotated[int | None, typer.Option(help=S["grace"])] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help=S["max_latency_ms"])] = None,
    latency_batch: Annotated[int, typer.Option(help=S["latency_batch"])] = 1,
    latency_device: Annotated[str, typer.Option(help=S["latency_device"])] = "cpu",
    latency_threads: Annotated[int, typer.Option(help=S["latency_threads"])] = 1,
    score: Annotated[str, typer.Option(help=S["score"])] = "none",
    mlflow: Annotated[str | None, typer.Option(help=h.MLFLOW)] = None,
    tensorboard: Annotated[str | None, typer.Option(help=h.TENSORBOARD)] = None,
    as_json: Json = False,
) -> None:
    """Search hyperparameters with Optuna and save the best model as runs/<study>/best.pt.

    Trials train on the training split and are judged on the validation split; the trial pruner
    stops bad trials early. The best trial is evaluated once on the test split. Running again with
    the same --study (and storage) resumes the study and adds trials.
    """

    from automl.search.budget import process_started

    started = process_started()  # --timeout counts from the command's start: interpreter, imports, storage
    from automl.exceptions import SearchInterrupted, TrainingError
    from automl.study import SearchSettings, resolve_trials, search_command
    from automl.ui.observers import search_observer

    out = _alias("--out-dir", out_dir, "--out", out_old, "runs")
    trials = resolve_trials(trials, timeout)  # --timeout alone: until the deadline
    settings = SearchSettings(
        task=task, data=data, target=target, space=space, trials=trials, timeout=timeout, epochs=epochs,
        sampler=sampler, pruner=pruner, storage=storage, study=study, out=out, device=device, seed=seed,
        image_size=image_size, problem=problem, jobs=jobs, heartbeat=heartbeat, grace=grace,
        categorical=categorical or (), numeric=numeric or (), test_data=test_data, cv=cv, objectives=objectives or (),
        normal=normal or (), contamination=contamination,
        save_front=save_front, ensemble=not no_ensemble,
        max_latency_ms=max_latency_ms, latency_batch=latency_batch, latency_device=latency_device,
        latency_threads=latency_threads, score=score, mlflow=mlflow, tensorboard=tensorboard,
        metric=metric, class_weight=class_weight,
    )
    try:
        result = search_command(settings, search_observer(trials, settings.epochs), started)
    except SearchInterrupted as exc:
        raise fail(str(exc), EXIT_INTERRUPTED) from None
    except TrainingError as exc:  # no trial completed (the message says what budget would do): a line, not a bug
        raise fail(_message(exc)) from None
    if as_json:
        print_json(result.to_json())
    else:
        from automl.ui.search import print_search_summary

        print_search_summary(result)
    if result.interrupted:
        raise fail("interrupted: the running trial was marked failed; run the same command again to resume",
                   EXIT_INTERRUPTED)


@app.command()
@handle_errors
def compress(
    best_pt: Annotated[str, typer.Argument(help="A best.pt written by 'automl search' (or a pruned.pt).")],
    out_dir: Annotated[str | None, typer.Option(help=C["out_dir"])] = None,
    out_old: Annotated[str | None, typer.Option("--out", hidden=True, help=h.OUT_OLD)] = None,
    prune_ratio: Annotated[float, typer.Option(help=C["prune_ratio"])] = 0.3,
    importance: Annotated[str, typer.Option(help="Channel importance for pruning: l1 | l2 | taylor.")] = "l1",
    finetune_epochs: Annotated[int, typer.Option(help=C["finetune_epochs"])] = 3,
    distill: Annotated[bool, typer.Option(help=C["distill"])] = False,
    distill_temperature: Annotated[float, typer.Option(help="Distillation temperature T (> 0).")] = 4.0,
    distill_weight: Annotated[float, typer.Option(help=C["distill_weight"])] = 0.5,
    quantize: Annotated[str, typer.Option(help="auto (INT8; FP16 too on a GPU) | int8 | fp16 | none.")] = "auto",
    calib_samples: Annotated[int, typer.Option(help=C["calib_samples"])] = 256,
    calibration: Annotated[str, typer.Option(help=C["calibration"])] = "auto",
    fallback: Annotated[bool, typer.Option(help=C["fallback"])] = True,
    max_drop: Annotated[float, typer.Option(help=C["max_drop"])] = 1.0,
    device: Annotated[str, typer.Option(help="Fine-tuning device: auto | cpu | cuda | cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of fine-tuning and of the calibration sample.")] = 0,
    warmup: Annotated[int, typer.Option(help="Untimed runs before each latency measurement.")] = 10,
    repeats: Annotated[int, typer.Option(help="Timed runs per latency measurement (p50/p95 over them).")] = 50,
    threads: Annotated[int, typer.Option(help=C["threads"])] = 0,
    search: Annotated[bool, typer.Option("--search", help=C["search"])] = False,
    trials: Annotated[int, typer.Option(help="--search: trials to add to the study.")] = 12,
    max_latency_ms: Annotated[float | None, typer.Option(help=C["max_latency_ms"])] = None,
    mlflow: Annotated[str | None, typer.Option(help=h.MLFLOW_COMPRESS)] = None,
    as_json: Json = False,
) -> None:
    """Prune, quantize and export the searched model to ONNX, then measure every variant.

    Each variant (fp32, pruned, int8, fp16) is measured on the test split recorded in the checkpoint:
    accuracy, file size, ONNX Runtime latency p50/p95 at batch 1 and 64. Variants that lose more than
    --max-drop points are rejected; quantized ones that are not faster than FP32 ONNX are marked so.
    Writes compress_report.json and names the recommended file.
    """
    from automl.tracking import check_trackers
    from automl.ui.compress import RichCompressObserver, print_compress_table
    from compress.pipeline import CompressSettings, run_compress

    check_trackers(mlflow=mlflow)  # a missing extra: one line, before the checkpoint is read
    out = _alias("--out-dir", out_dir, "--out", out_old, None)
    settings = CompressSettings(
        checkpoint=best_pt, out=out, prune_ratio=prune_ratio, importance=importance,
        finetune_epochs=finetune_epochs, quantize=quantize, calib_samples=calib_samples, max_drop=max_drop,
        distill=distill, distill_temperature=distill_temperature, distill_weight=distill_weight,
        calibration=calibration, fallback=fallback,
        device=device, seed=seed, warmup=warmup, repeats=repeats, threads=threads,
    )
    from automl.ui.plain import PlainCompressObserver, stderr_is_terminal

    if search:
        if mlflow:
            raise fail("--mlflow logs a one-shot compress; run compress without --search to log it", 2)
        _compress_search(settings, trials, max_latency_ms, as_json)
        return
    with (RichCompressObserver() if stderr_is_terminal() else PlainCompressObserver()) as observer:
        result = run_compress(settings, observer=observer, mlflow=mlflow)
    if as_json:
        print_json(result.to_json())
        return
    print_compress_table(result.report)
    from automl.ui.views import print_compress_next

    print_compress_next(result.report)


def _compress_search(settings: Any, trials: int, max_latency_ms: float | None, as_json: bool) -> None:
    from automl.ui.compress import RichCompressObserver, print_search_table
    from automl.ui.plain import PlainCompressObserver, stderr_is_terminal
    from compress.search import check_search_args, run_compress_search

    check_search_args(trials, max_latency_ms)
    with (RichCompressObserver() if stderr_is_terminal() else PlainCompressObserver()) as observer:
        report = run_compress_search(settings, trials, max_latency_ms, observer=observer)
    if as_json:
        print_json(report)
    else:
        print_search_table(report)
    if report["budget_unmet"]:
        raise fail(report["budget_unmet"])


@app.command()
@handle_errors
def serve(
    model: Annotated[str, typer.Argument(help=V["model"], show_default=False)],
    host: Annotated[str, typer.Option(help=V["host"])] = "127.0.0.1",
    port: Annotated[int, typer.Option(help=V["port"])] = 8000,
    max_batch: Annotated[int, typer.Option(help=V["max_batch"])] = 32,
    batch_wait_ms: Annotated[float, typer.Option(help=V["batch_wait_ms"])] = 2.0,
    api_key: Annotated[str | None, typer.Option(envvar="AUTOML_API_KEY", help=V["api_key"])] = None,
    threads: Annotated[int, typer.Option(help=V["threads"])] = 0,
    max_body_mb: Annotated[float, typer.Option(help=V["max_body_mb"])] = 16.0,
    max_samples: Annotated[int, typer.Option(help=V["max_samples"])] = 256,
    max_image_pixels: Annotated[int | None, typer.Option(help=V["max_image_pixels"])] = None,
    max_text_chars: Annotated[int | None, typer.Option(help=V["max_text_chars"])] = None,
    header_timeout: Annotated[float, typer.Option(help=V["header_timeout"])] = 10.0,
    body_timeout: Annotated[float, typer.Option(help=V["body_timeout"])] = 60.0,
    max_header_kb: Annotated[int, typer.Option(help=V["max_header_kb"])] = 64,
    access_log: Annotated[bool, typer.Option(help=V["access_log"])] = False,
    as_json: Annotated[bool, typer.Option("--json", help=V["as_json"])] = False,
) -> None:
    """Serve an ONNX model over HTTP: POST /predict, GET /health, /metadata and /metrics.

    POST /predict takes JSON {"inputs": [...]} or image files (multipart); concurrent requests are
    micro-batched into one ONNX Runtime call. Ctrl-C or SIGTERM stop the server once the requests
    in flight are answered.
    """
    from automl.serve.server import ServeSettings, bind_socket, load_model, server_summary, url_of
    from automl.serve.server import serve as run_server
    from automl.ui import serve as ui

    settings = ServeSettings(
        model=model, host=host, port=port, max_batch=max_batch, batch_wait_ms=batch_wait_ms, api_key=api_key,
        threads=threads, max_body_bytes=int(max_body_mb * 1024 * 1024), max_samples=max_samples,
        access_log=access_log, max_image_pixels=max_image_pixels, max_text_chars=max_text_chars,
        header_timeout=header_timeout, body_timeout=body_timeout, max_header_bytes=max_header_kb * 1024,
    ).validate()
    if api_key is not None and os.environ.get("AUTOML_API_KEY") != api_key:
        ui.print_api_key_warning()
    loaded = load_model(settings)
    sock = bind_socket(settings.host, settings.port)
    info = server_summary(loaded, settings, url_of(sock))
    if as_json:  # with --port 0, how a script learns the port
        print_json(info)
    ui.print_serving(info)
    ui.print_stopped(run_server(settings, loaded, sock))


@app.command()
@handle_errors
def predict(
    model: Annotated[str, typer.Argument(help="An automl .onnx file or a best.pt checkpoint.", show_default=False)],
    inputs: Annotated[list[str], typer.Argument(help=h.PREDICT_INPUTS, show_default=False)],
    top_k: Annotated[int, typer.Option(help="How many most likely classes to list per sample.")] = 5,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads (0 = one per core).")] = 0,
    as_json: Json = False,
) -> None:
    """Predict offline, with the same preprocessing as training and serving."""
    from automl.runtime.predict import predict as run_predict
    from automl.ui.predict import print_notes, print_predictions

    result = run_predict(model, inputs, top_k=top_k, threads=threads)
    print_notes(result)  # said once per run, on stderr (stdout stays the result)
    if as_json:
        print_json(result)
    else:
        print_predictions(result)


@app.command()
@handle_errors
def worker(
    storage: Annotated[str, typer.Option(help=W["storage"])],
    study: Annotated[str, typer.Option(help=W["study"])],
    trials: Annotated[int | None, typer.Option(help=W["trials"])] = None,
    timeout: Annotated[float | None, typer.Option(help=W["timeout"])] = None,
    out_dir: Annotated[str, typer.Option(help=W["out_dir"])] = "runs",
    out_old: Annotated[str | None, typer.Option("--out", hidden=True, help=h.OUT_OLD)] = None,
    device: Annotated[str, typer.Option(help=h.DEVICE)] = "auto",
    heartbeat: Annotated[int | None, typer.Option(help=W["heartbeat"])] = None,
    grace: Annotated[int | None, typer.Option(help=W["grace"])] = None,
    mlflow: Annotated[str | None, typer.Option(help=h.MLFLOW)] = None,
    tensorboard: Annotated[str | None, typer.Option(help=h.TENSORBOARD)] = None,
    as_json: Json = False,
) -> None:
    """Join an existing study from this machine and run trials on it.

    The task, data source, search space and epochs come from the study (stored there by
    'automl search'), so no other flags are needed. Start one worker per machine (or per GPU) on a
    shared PostgreSQL/MySQL storage. A trial whose worker dies is marked failed after the grace
    period and retried once by another worker; Ctrl-C ends the running trial (marked failed) and
    exits with code 130. best.pt is written when this machine holds the study's best trial.
    """

    from automl.search.budget import process_started

    started = process_started()  # --timeout counts from the command's start
    from automl.study import WorkerSettings, check_worker, run_worker
    from automl.ui.observers import search_observer

    out = _alias("--out-dir", out_dir, "--out", out_old, "runs")
    settings = WorkerSettings(storage=storage, study=study, trials=trials, timeout=timeout, out=out, device=device,
                              heartbeat=heartbeat, grace=grace, mlflow=mlflow, tensorboard=tensorboard)
    check_worker(settings)  # bad storage or study name: one line, before the progress display
    with search_observer(trials, 1) as observer:
        result = run_worker(settings, observer=observer, start=started)
    if as_json:
        print_json(result.to_json())
    else:
        from automl.ui.search import print_worker_summary

        print_worker_summary(result)
    if result.interrupted:
        raise fail("interrupted: the running trial was marked failed; start the worker again to continue",
                   EXIT_INTERRUPTED)


@app.command()
@handle_errors
def report(
    study: Annotated[str | None, typer.Option(help=h.STUDY)] = None,
    storage: Annotated[str | None, typer.Option(help=h.STORAGE)] = None,
    html: Annotated[str | None, typer.Option(help=h.HTML)] = None,
    out_old: Annotated[str | None, typer.Option("--out", hidden=True, help="Old name of --html.")] = None,
    out_dir: Annotated[str, typer.Option(help=h.OUT_DIR)] = "runs",
    as_json: Json = False,
) -> None:
    """Write one self-contained HTML report of a study (opens offline in any browser).

    Optuna's optimisation history, parameter importances, parallel coordinates, slice plots and
    intermediate values (where the trial pruner stopped trials); the best trial's training curves;
    and the best model's confusion matrix and per-class precision/recall/F1 on the test split.
    """
    from automl.report import default_report_path, write_report
    from automl.study.trials import load_study

    out = _alias("--html", html, "--out", out_old, None)
    loaded = load_study(storage, study, out_dir)
    with stderr_console().status(f"writing the report of study '{loaded.study_name}'"):
        result = write_report(loaded, out or default_report_path(loaded.study_name, out_dir))
    if as_json:
        print_json(result.to_json())
    else:
        from automl.ui.views import print_report_written

        print_report_written(result)


@app.command()
@handle_errors
def trials(
    study: Annotated[str | None, typer.Option(help=h.STUDY)] = None,
    storage: Annotated[str | None, typer.Option(help=h.STORAGE)] = None,
    out_dir: Annotated[str, typer.Option(help=h.OUT_DIR)] = "runs",
    sort: Annotated[str, typer.Option(help=h.SORT)] = "number",
    state: Annotated[str | None, typer.Option(help="Only trials in this state: " + h.STATES)] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help=h.PARETO)] = False,
    as_json: Json = False,
) -> None:
    """List the trials of a study: number, state, value, duration, epochs, parameters, reason.

    A pruned trial shows the epoch the trial pruner stopped it at and why; a failed one, why it failed.
    """
    from automl.study.trials import load_study, pareto_summary, study_trials

    if pareto:
        summary = pareto_summary(load_study(storage, study, out_dir))
    else:
        summary = study_trials(storage, study, out_dir, sort=sort, state=state)
    if as_json:
        print_json(summary)
        return
    from automl.ui.trials import print_pareto, print_trials

    (print_pareto if pareto else print_trials)(summary)


@app.command()
@handle_errors
def dashboard(
    storage: Annotated[str | None, typer.Option(help=h.STORAGE)] = None,
    study: Annotated[str | None, typer.Option(help="Print the page of this study (it must exist).")] = None,
    out_dir: Annotated[str, typer.Option(help=h.OUT_DIR)] = "runs",
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8080,
    as_json: Annotated[bool, typer.Option("--json", help=h.DASHBOARD_JSON)] = False,
) -> None:
    """Start optuna-dashboard on the study storage; Ctrl+C stops it."""
    from automl.study.dashboard import make_dashboard
    from automl.ui.serve import print_dashboard

    board = make_dashboard(storage, host=host, port=port, out_dir=out_dir, study=study)
    try:
        if as_json:
            print_json(board.to_json())
        print_dashboard(board, host, study, as_json)
        board.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        board.close()


@app.command()
@handle_errors
def lineage(
    model: Annotated[str, typer.Argument(help="A file automl wrote: .onnx, .pt, compress_report.json or report.html.",
                                         show_default=False)],
    as_json: Json = False,
) -> None:
    """Show where a model came from: each file back to its study and trial, every hash checked.

    Each parent is looked up beside the file (then at its recorded path) and hashed: "verified" when
    it is the file the child was made from, "changed" or "missing" otherwise. The study's trial is
    looked up when the storage is a SQLite file here. Exit code 1 when any link fails.
    """
    from automl.lineage.trace import trace

    chain = trace(model)
    if as_json:
        print_json(chain)
    else:
        from automl.ui.lineage import print_lineage

        print_lineage(chain)
    if not chain["ok"]:
        raise fail(f"{model}: {len(chain['problems'])} problem(s) in its lineage")


@app.command()
@handle_errors
def card(
    model: Annotated[str, typer.Argument(help="A file of a compress output folder (best.onnx …), the folder, or "
                                              "its compress_report.json.", show_default=False)],
    out: Annotated[str | None, typer.Option(help="Write the card here (default: MODEL_CARD.md beside the report).")]
    = None,
    as_json: Json = False,
) -> None:
    """Write the model card (MODEL_CARD.md, Hugging Face layout) of a compressed model again.

    Built from compress_report.json alone: every figure in it is the report's.
    """
    from automl.lineage.card import write_card

    info = write_card(model, out)
    if as_json:
        print_json(info)
    else:
        from automl.ui.lineage import print_card_written

        print_card_written(info)


def _is_the_process() -> bool:
    """Whether this process was started to run the command (``automl``, ``python cli.py``, ``-m cli``)."""
    return process.is_the_process(__file__)


def main() -> None:
    """Console-script entry point: usage errors become one line too; the process then ends without
    the interpreter's teardown (``automl.ui.process.exit_now``)."""
    try:
        _main()
    except SystemExit as exc:
        if not _is_the_process():  # called in-process (a test, another program): exit as usual
            raise
        code = exc.code
        process.exit_now(code if isinstance(code, int) else (0 if code is None else 1))


def _main() -> None:
    exit_types, abort_types, click_errors = process.click_exception_types()
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting with it.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except exit_types as exc:
        sys.exit(exc.exit_code)
    except abort_types:
        stderr_console().print("[bold red]error:[/] aborted")
        sys.exit(EXIT_INTERRUPTED)
    except click_errors as exc:
        process.print_usage_error(exc)
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
