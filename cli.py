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

from automl.exceptions import EXIT_INTERRUPTED, AutomlError, exit_code

app = typer.Typer(
    name="automl",
    help="Find a good network with Optuna, shrink it (pruning, INT8/FP16), ship it with ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _plain_help_style() -> None:
    """Typer's help shows ``<bool>`` after plain switches (``--json <bool>``, yet ``--json true``
    fails) and ``{best_pt}`` in the usage line; show switches bare and arguments as ``BEST_PT``."""
    from typer import core

    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if option is not None and hasattr(option, "display_type_rich"):
        shown = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            return None if getattr(self, "is_flag", False) else shown(self, ctx)

        option.display_type_rich = display_type_rich
    if argument is not None and hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = (self.metavar or self.name or "").upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        argument._usage_display_name = usage_name


_plain_help_style()


def _reflow(doc: str | None) -> str | None:
    """A docstring with each paragraph on one line, so help text wraps at the terminal's width
    instead of keeping the source's line breaks (ragged at any other width)."""
    if not doc:
        return doc
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)
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
            raise fail(str(exc), exit_code(exc)) from None
        except KeyboardInterrupt as exc:
            raise fail("interrupted", exit_code(exc)) from None
        except Exception as exc:  # an unexpected bug: still one line unless --verbose
            if _state["verbose"]:
                raise
            raise fail(f"{exc.__class__.__name__}: {exc} (run with --verbose for the traceback)") from None

    wrapper.__doc__ = _reflow(fn.__doc__)
    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


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


def _task_help() -> str:
    from automl.tasks import list_tasks

    return "Task to search: " + " | ".join(list_tasks()) + "."


def _sampler_help() -> str:
    from automl.study import list_samplers

    return "Optuna sampler: " + " | ".join(list_samplers()) + "."


def _pruner_help() -> str:
    from automl.study import list_trial_pruners

    return "Trial pruner (stops bad trials early): " + " | ".join(list_trial_pruners()) + "."


@app.command()
@handle_errors
def search(
    task: Annotated[str, typer.Option("--task", help=_task_help())] = "image",
    data: Annotated[
        str | None,
        typer.Option(
            help="Data. image: 'digits' (built in), cifar10 | mnist | fashion-mnist (torchvision, needs internet), "
            "or a folder DIR/train/<class>/* (optional DIR/test/<class>/*) or DIR/<class>/*. "
            "tabular: wine | breast-cancer | diabetes (built in) or FILE.csv/.tsv/.parquet with --target. "
            "text: FILE.csv/.tsv with 'text' and 'label' columns, or a folder DIR/<class>/*.txt. "
            "Tables may be compressed (.gz, .bz2, .xz, .zst) or alone in a .zip."
        ),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Target column (tabular data).")] = None,
    problem: Annotated[
        str | None, typer.Option(help="classification | regression (tabular; default: inferred from the target).")
    ] = None,
    categorical: Annotated[
        str | None, typer.Option(help="Tabular columns to treat as categories, comma-separated (default: text and "
                                 "bool columns, and integer columns of 3-20 codes).")
    ] = None,
    numeric: Annotated[
        str | None, typer.Option(help="Tabular columns to treat as numbers, comma-separated (overrides the rule "
                                 "above).")
    ] = None,
    test_data: Annotated[
        str | None, typer.Option(help="A separate test file (tabular, text; same columns as --data): it is the test "
                                 "split, and --data is split into training and validation only.")
    ] = None,
    cv: Annotated[
        int | None, typer.Option(help="Folds of cross-validation per trial (tabular, text): each trial trains K "
                                 "times and scores the mean over held-out folds; 0 = off. Default: 5 when the "
                                 "training + validation rows are fewer than 1000, else off.")
    ] = None,
    space: Annotated[
        str | None, typer.Option(help="Search-space YAML file, or a built-in name: image, image-full, tabular, text "
                                   "(default: the task's own).")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Number of trials to add to the study (default: 20; with --timeout: as many "
                                 "as fit before the deadline; with both, whichever ends first).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Deadline in seconds, best.pt included: without --trials, trials run until "
                                   "it. A trial still training then is stopped and kept at its last completed "
                                   "epoch (marked 'deadline'; it can be best.pt).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs a trial may train (default: the task's, 10; text 5).")
    ] = None,
    sampler: Annotated[str, typer.Option(help=_sampler_help())] = "tpe",
    pruner: Annotated[str, typer.Option(help=_pruner_help())] = "median",
    objectives: Annotated[
        str | None, typer.Option(help="Several objectives: the task's metric, then costs to minimise, comma-separated "
                                 "from latency (ms, ONNX Runtime on the target), size (ONNX bytes), macs, params; "
                                 "e.g. accuracy,latency. The study then has a Pareto front (automl trials --pareto); "
                                 "any --pruner but none means the cost-aware trial pruner.")
    ] = None,
    save_front: Annotated[
        bool, typer.Option("--save-front", help="With --objectives: also write one checkpoint per Pareto-front "
                           "member as <out-dir>/<study>/front/trial-N.pt.")
    ] = False,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: sqlite:///<out>/automl.db).")
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Study name (default: <task>-<data>); an existing study resumes.")
    ] = None,
    out_dir: Annotated[
        str, typer.Option(help="Output folder for the study database and <out-dir>/<study>/best.pt.")
    ] = "runs",
    out_old: Annotated[str | None, typer.Option("--out", hidden=True, help="Old name of --out-dir.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the data split, the sampler and each trial.")] = 0,
    image_size: Annotated[
        int | None, typer.Option(help="Resize folder images to this square size (default: the first image's size).")
    ] = None,
    jobs: Annotated[
        int, typer.Option(help="Worker processes on the study (> 1: a journal file under --out-dir unless --storage "
                          "is a database server).")
    ] = 1,
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between trial heartbeats (database storages; 0 = off).")
    ] = 10,
    grace: Annotated[
        int | None, typer.Option(help="Seconds without a heartbeat before a trial's worker counts as dead and "
                                 "the trial is retried once (default: 3 x --heartbeat).")
    ] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="Latency budget in ms: every sampled network is exported to ONNX and timed "
                                   "on the target (random weights) before training; a slower one is not trained "
                                   "and the sampler learns to avoid it. best.pt is the best trial within it.")
    ] = None,
    latency_batch: Annotated[int, typer.Option(help="Latency target: rows per call (with --max-latency-ms).")] = 1,
    latency_device: Annotated[
        str, typer.Option(help="Latency target: cpu | cuda (ONNX Runtime's provider; cuda needs a GPU).")
    ] = "cpu",
    latency_threads: Annotated[
        int, typer.Option(help="Latency target: ONNX Runtime intra-op threads (1 = one core).")
    ] = 1,
    score: Annotated[
        str, typer.Option(help="Compression-aware scoring: none | int8 | fp16 (GPU only). Each trained trial is "
                          "also quantized as 'automl compress' does (INT8: calibrated on 256 training rows) and "
                          "its value is the quantized model's validation metric; with a latency budget or "
                          "objective, the quantized model's latency counts.")
    ] = "none",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
) -> None:
    """Search hyperparameters with Optuna and save the best model as runs/<study>/best.pt.

    Trials train on the training split and are judged on the validation split; the trial pruner
    stops bad trials early. The best trial is evaluated once on the test split. Running again with
    the same --study (and storage) resumes the study and adds trials.
    """

    from automl.search.budget import process_started

    started = process_started()  # --timeout counts from the command's start: interpreter, imports, storage
    from automl.search.precheck import precheck_search
    from automl.study import SearchSettings, resolve_trials

    out = _alias("--out-dir", out_dir, "--out", out_old, "runs")
    trials = resolve_trials(trials, timeout)  # --timeout alone: until the deadline
    settings = SearchSettings(
        task=task, data=data, target=target, space=space, trials=trials, timeout=timeout, epochs=epochs,
        sampler=sampler, pruner=pruner, storage=storage, study=study, out=out, device=device, seed=seed,
        image_size=image_size, problem=problem, jobs=jobs, heartbeat=heartbeat, grace=grace,
        categorical=_column_list(categorical), numeric=_column_list(numeric), test_data=test_data, cv=cv,
        objectives=objectives or (), save_front=save_front,
        max_latency_ms=max_latency_ms, latency_batch=latency_batch, latency_device=latency_device,
        latency_threads=latency_threads, score=score,
    )
    precheck_search(settings)  # wrong paths, space files, target columns: fail before torch is imported
    from automl.exceptions import SearchInterrupted, TrainingError
    from automl.study import check_storage, run_search

    url = check_storage(settings)  # a bad --storage fails as one line, before the progress display
    before = _study_names(url)
    try:
        with _search_observer(trials, settings.epochs, timeout, started) as observer:
            result = run_search(settings, observer=observer, start=started)
    except SearchInterrupted as exc:
        raise fail(str(exc), EXIT_INTERRUPTED) from None
    except TrainingError as exc:  # no trial completed: say what budget would have done
        _drop_new_empty_studies(url, before)
        advice = observer.budget.advice()
        raise fail(f"{exc}; {advice}" if advice else str(exc)) from None
    except BaseException:
        _drop_new_empty_studies(url, before)
        raise
    result.notes.extend(observer.budget.final_notes())
    if as_json:
        print_json(result.to_json())
    else:
        from automl.ui.search import print_search_summary

        print_search_summary(result)
    if result.interrupted:
        raise fail("interrupted: the running trial was marked failed; run the same command again to resume",
                   EXIT_INTERRUPTED)


def _column_list(value: str | None) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``; None or empty -> ``()``."""
    return tuple(c.strip() for c in (value or "").split(",") if c.strip())


def _alias(name: str, value: Any, old_name: str, old_value: Any, default: Any) -> Any:
    """The value of an option that also answers to its old, hidden spelling."""
    if old_value is None:
        return value
    if value != default and value != old_value:
        raise fail(f"{name} and {old_name} (its old name) disagree: {value!r} vs {old_value!r}; pass one", 2)
    return old_value


def _search_observer(trials: int | None, epochs: int, timeout: float | None, started: float | None = None) -> Any:
    """Rich's live display on a terminal; plain, flushed lines when stderr is a pipe or a file."""
    from automl.ui.plain import PlainSearchObserver, stderr_is_terminal

    if not stderr_is_terminal():
        return PlainSearchObserver(total=trials, epochs=epochs, timeout=timeout, started=started)
    from automl.ui.search import RichSearchObserver

    return RichSearchObserver(total=trials, epochs=epochs, timeout=timeout, started=started)


def _study_names(url: str) -> set[str] | None:
    """Names of the studies in a storage, or None when they cannot be read."""
    try:
        from automl.study import open_storage, study_names

        return set(study_names(open_storage(url)))
    except Exception:
        return None


def _drop_new_empty_studies(url: str, before: set[str] | None) -> None:
    """A search that failed before its first trial (unreadable data, Ctrl-C while loading) must not
    leave an empty study behind: delete the studies it created that hold no trials."""
    if before is None:
        return
    try:
        import optuna

        from automl.study import open_storage

        storage = open_storage(url)
        for summary in optuna.get_all_study_summaries(storage):
            if summary.study_name not in before and summary.n_trials == 0:
                optuna.delete_study(study_name=summary.study_name, storage=storage)
    except Exception:  # cleaning up must never hide the error that ended the search
        pass


# --- compress (issue 3) ---


@app.command()
@handle_errors
def compress(
    best_pt: Annotated[str, typer.Argument(help="A best.pt written by 'automl search' (or a pruned.pt).")],
    out_dir: Annotated[
        str | None, typer.Option(help="Output folder (default: compressed/ beside the checkpoint).")
    ] = None,
    out_old: Annotated[str | None, typer.Option("--out", hidden=True, help="Old name of --out-dir.")] = None,
    prune_ratio: Annotated[
        float, typer.Option(help="Share of channels to remove from every prunable layer, in [0, 1); 0 = no pruning.")
    ] = 0.3,
    importance: Annotated[str, typer.Option(help="Channel importance for pruning: l1 | l2 | taylor.")] = "l1",
    finetune_epochs: Annotated[
        int, typer.Option(help="Epochs of fine-tuning after pruning (the search's training loop).")
    ] = 3,
    distill: Annotated[
        bool, typer.Option(help="Fine-tune the pruned model by distillation from the unpruned one (KL on softened "
                           "logits + the task loss; classification only).")
    ] = False,
    distill_temperature: Annotated[float, typer.Option(help="Distillation temperature T (> 0).")] = 4.0,
    distill_weight: Annotated[
        float, typer.Option(help="Share of the distillation (soft-target) term in the loss, in [0, 1].")
    ] = 0.5,
    quantize: Annotated[
        str, typer.Option(help="auto (INT8; FP16 too on a GPU) | int8 | fp16 | none.")
    ] = "auto",
    calib_samples: Annotated[
        int, typer.Option(help="Training samples used to calibrate static INT8 (streamed in small batches).")
    ] = 256,
    calibration: Annotated[
        str, typer.Option(help="Static INT8 calibration: auto (MinMax, Entropy, Percentile x per-channel/per-tensor, "
                          "chosen by validation accuracy) | minmax | entropy | percentile.")
    ] = "auto",
    fallback: Annotated[
        bool, typer.Option(help="When INT8 loses more than --max-drop on validation, measure each layer's "
                           "sensitivity and keep the most sensitive layers FP32 until it does not.")
    ] = True,
    max_drop: Annotated[
        float, typer.Option(help="Accuracy points a variant may lose against the original model.")
    ] = 1.0,
    device: Annotated[str, typer.Option(help="Fine-tuning device: auto | cpu | cuda | cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of fine-tuning and of the calibration sample.")] = 0,
    warmup: Annotated[int, typer.Option(help="Untimed runs before each latency measurement.")] = 10,
    repeats: Annotated[int, typer.Option(help="Timed runs per latency measurement (p50/p95 over them).")] = 50,
    threads: Annotated[
        int, typer.Option(help="Intra-op threads of PyTorch and ONNX Runtime for this run (0 = their defaults).")
    ] = 0,
    search: Annotated[
        bool, typer.Option("--search", help="Search compression recipes with an Optuna multi-objective study "
                           "(validation metric vs measured batch-1 latency): prune ratio, importance, fine-tune "
                           "epochs, distillation, quantization, calibration. Resumable: the same command adds trials.")
    ] = False,
    trials: Annotated[int, typer.Option(help="--search: trials to add to the study.")] = 12,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="--search: recommend the most accurate variant at most this slow "
                                   "(ms, batch 1); without it the fastest within --max-drop.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
) -> None:
    """Prune, quantize and export the searched model to ONNX, then measure every variant.

    Each variant (fp32, pruned, int8, fp16) is measured on the test split recorded in the checkpoint:
    accuracy, file size, ONNX Runtime latency p50/p95 at batch 1 and 64. Variants that lose more than
    --max-drop points are rejected; quantized ones that are not faster than FP32 ONNX are marked so.
    Writes compress_report.json and names the recommended file.
    """
    from automl.ui.compress import RichCompressObserver, print_compress_table
    from compress.pipeline import CompressSettings, run_compress

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
        _compress_search(settings, trials, max_latency_ms, as_json)
        return
    with (RichCompressObserver() if stderr_is_terminal() else PlainCompressObserver()) as observer:
        result = run_compress(settings, observer=observer)
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


# --- serve / predict (issue 4) ---


@app.command()
@handle_errors
def serve(
    model: Annotated[str, typer.Argument(help="An automl .onnx file (from 'automl compress').", show_default=False)],
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 = every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port).")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most samples per model call when batching requests.")] = 32,
    batch_wait_ms: Annotated[
        float, typer.Option(help="Longest wait (ms) for concurrent requests to join a batch.")
    ] = 2.0,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="AUTOML_API_KEY", help="Require 'Authorization: Bearer KEY' (every path but /health). "
                     "Set it in the AUTOML_API_KEY environment variable: a flag is visible to every user in ps."),
    ] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads (0 = one per core).")] = 0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body accepted (MiB); larger gets 413.")] = 16.0,
    max_samples: Annotated[int, typer.Option(help="Most samples in one request; more gets 413.")] = 256,
    max_image_pixels: Annotated[
        int | None, typer.Option(help="Most pixels of one uploaded image, checked before decoding; more gets 413 "
                                 "(default: 16 megapixels, or 256 x the model input if larger).")
    ] = None,
    max_text_chars: Annotated[
        int | None, typer.Option(help="Most characters of one text; more gets 413 (default 100000).")
    ] = None,
    header_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send a request's headers before it is disconnected.")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request's body may take to arrive after its headers; then 408.")
    ] = 60.0,
    max_header_kb: Annotated[
        int, typer.Option(help="Largest request line + headers (KiB); larger gets 431 and the connection closed.")
    ] = 64,
    access_log: Annotated[bool, typer.Option(help="Log every request (costs throughput).")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the server's URL and model as one JSON object on stdout, then serve.")
    ] = False,
) -> None:
    """Serve an ONNX model over HTTP: POST /predict, GET /health, /metadata and /metrics.

    POST /predict takes JSON {"inputs": [...]} or image files (multipart); concurrent requests are
    micro-batched into one ONNX Runtime call. Ctrl-C or SIGTERM stop the server once the requests
    in flight are answered.
    """
    from automl.serve.server import ServeSettings, bind_socket, load_model, server_summary, url_of
    from automl.serve.server import serve as run_server

    settings = ServeSettings(
        model=model, host=host, port=port, max_batch=max_batch, batch_wait_ms=batch_wait_ms, api_key=api_key,
        threads=threads, max_body_bytes=int(max_body_mb * 1024 * 1024), max_samples=max_samples,
        access_log=access_log, max_image_pixels=max_image_pixels, max_text_chars=max_text_chars,
        header_timeout=header_timeout, body_timeout=body_timeout, max_header_bytes=max_header_kb * 1024,
    ).validate()
    if api_key is not None and os.environ.get("AUTOML_API_KEY") != api_key:
        _stderr_console().print("[yellow]warning:[/] --api-key on the command line is visible to every user "
                                "(ps, shell history); set AUTOML_API_KEY in the environment instead")
    loaded = load_model(settings)
    sock = bind_socket(settings.host, settings.port)
    info = server_summary(loaded, settings, url_of(sock))
    if as_json:  # with --port 0, how a script learns the port
        print_json(info)
    _stderr_console().print(
        f"[bold green]serving[/] {info['model']} ({info['task']}, {info['classes']} classes, {info['variant']}, "
        f"{info['provider']}) on [bold]{info['url']}[/]  (Ctrl-C to stop)", soft_wrap=True, emoji=False,
    )
    stopped_by = run_server(settings, loaded, sock)
    _stderr_console().print(f"stopped{f' by {stopped_by}' if stopped_by else ''}; requests in flight were answered")


@app.command()
@handle_errors
def predict(
    model: Annotated[str, typer.Argument(help="An automl .onnx file or a best.pt checkpoint.", show_default=False)],
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files or folders; a CSV/TSV/Parquet (tabular); text lines, .txt files or '-' "
                       "for stdin (text).", show_default=False),
    ],
    top_k: Annotated[int, typer.Option(help="How many most likely classes to list per sample.")] = 5,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads (0 = one per core).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
) -> None:
    """Predict offline, with the same preprocessing as training and serving."""
    from automl.runtime.predict import predict as run_predict

    result = run_predict(model, inputs, top_k=top_k, threads=threads)
    for note in result.get("notes", []):  # said once per run, on stderr (stdout stays the result)
        _stderr_console().print(f"[yellow]note:[/] {note}", soft_wrap=True, emoji=False, markup=True)
    if as_json:
        print_json(result)
        return
    from rich.console import Console

    from automl.runtime.predict import predictions_table

    Console().print(predictions_table(result))


# --- worker (issue 6) ---


@app.command()
@handle_errors
def worker(
    storage: Annotated[
        str, typer.Option(help="Storage of the study: postgresql://user:pass@host/db, mysql+pymysql://…, "
                          "sqlite:///file.db or a journal file (*.log).")
    ],
    study: Annotated[str, typer.Option(help="Name of an existing study (created by 'automl search').")],
    trials: Annotated[
        int | None, typer.Option(help="Trials this worker adds (default: until --timeout or Ctrl-C).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Deadline in seconds: a trial still training then is stopped and kept at "
                                   "its last completed epoch (marked 'deadline').")
    ] = None,
    out_dir: Annotated[
        str, typer.Option(help="Folder for this machine's trial weights and <out-dir>/<study>/best.pt.")
    ] = "runs",
    out_old: Annotated[str | None, typer.Option("--out", hidden=True, help="Old name of --out-dir.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    heartbeat: Annotated[
        int | None, typer.Option(help="Seconds between trial heartbeats (default: the study's; 0 = off).")
    ] = None,
    grace: Annotated[
        int | None, typer.Option(help="Seconds without a heartbeat before a trial counts as dead (default: study's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
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

    out = _alias("--out-dir", out_dir, "--out", out_old, "runs")
    settings = WorkerSettings(storage=storage, study=study, trials=trials, timeout=timeout, out=out, device=device,
                              heartbeat=heartbeat, grace=grace)
    check_worker(settings)  # bad storage or study name: one line, before the progress display
    with _search_observer(trials, 1, None) as observer:
        result = run_worker(settings, observer=observer, start=started)
    if as_json:
        print_json(result.to_json())
    else:
        _print_worker_summary(result)
    if result.interrupted:
        raise fail("interrupted: the running trial was marked failed; start the worker again to continue",
                   EXIT_INTERRUPTED)


def _print_worker_summary(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

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
    Console().print(table)


# --- report / trials / dashboard (issue 7) ---

_STUDY_HELP = "Study name (default: the storage's only study)."
_STORAGE_HELP = "Optuna storage URL (default: the search's database under --out-dir)."
_OUT_DIR_HELP = "The search's --out-dir folder: where its automl.db (or journal.log) and runs/<study>/ are."


@app.command()
@handle_errors
def report(
    study: Annotated[str | None, typer.Option(help=_STUDY_HELP)] = None,
    storage: Annotated[str | None, typer.Option(help=_STORAGE_HELP)] = None,
    html: Annotated[
        str | None, typer.Option(help="HTML file to write (default: <out-dir>/<study>/report.html).")
    ] = None,
    out_old: Annotated[str | None, typer.Option("--out", hidden=True, help="Old name of --html.")] = None,
    out_dir: Annotated[str, typer.Option(help=_OUT_DIR_HELP)] = "runs",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
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
    path = out or default_report_path(loaded.study_name, out_dir)
    with _stderr_console().status(f"writing the report of study '{loaded.study_name}'"):
        result = write_report(loaded, path)
    if as_json:
        print_json(result.to_json())
        return
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    size = f"{result.bytes / 1e6:.1f} MB, {len(result.figures)} plots"
    console.print(f"report: [bold]{escape(result.path)}[/] ({size})", soft_wrap=True)
    for key, why in result.skipped.items():
        console.print(f"  [dim]not drawn: {key}: {escape(why)}[/]")
    console.print(f"open: {Path(result.path).resolve().as_uri()}", soft_wrap=True, markup=False)


@app.command()
@handle_errors
def trials(
    study: Annotated[str | None, typer.Option(help=_STUDY_HELP)] = None,
    storage: Annotated[str | None, typer.Option(help=_STORAGE_HELP)] = None,
    out_dir: Annotated[str, typer.Option(help=_OUT_DIR_HELP)] = "runs",
    sort: Annotated[
        str, typer.Option(help="Order: number | value (best first) | duration (longest first).")
    ] = "number",
    state: Annotated[
        str | None, typer.Option(help="Only trials in this state: complete | pruned | fail | running.")
    ] = None,
    pareto: Annotated[
        bool, typer.Option("--pareto", help="Only the Pareto front (a study searched with --objectives): each "
                           "member's objectives and measured latency, ONNX size and parameters.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
) -> None:
    """List the trials of a study: number, state, value, duration, epochs, parameters, reason.

    A pruned trial shows the epoch the trial pruner stopped it at and why; a failed one, why it failed.
    """
    if pareto:
        _print_pareto(study, storage, out_dir, as_json)
        return
    from automl.exceptions import ConfigError
    from automl.study.trials import SORT_KEYS, list_trials, load_study, trials_summary

    if sort not in SORT_KEYS:
        raise ConfigError(f"unknown --sort {sort!r} (choose from: {', '.join(SORT_KEYS)})")
    states = ("complete", "pruned", "fail", "running", "waiting")
    if state is not None and state not in states:
        raise ConfigError(f"unknown --state {state!r} (choose from: {', '.join(states)})")
    loaded = load_study(storage, study, out_dir)
    rows = list_trials(loaded, sort)
    if state is not None:
        rows = [r for r in rows if r.state == state]
    summary = trials_summary(loaded, rows)
    if as_json:
        print_json(summary)
        return
    from automl.ui.views import print_trials

    print_trials(summary)


def _print_pareto(study: str | None, storage: str | None, out_dir: str, as_json: bool) -> None:
    from automl.study.trials import load_study, pareto_summary, pareto_table

    summary = pareto_summary(load_study(storage, study, out_dir))
    if as_json:
        print_json(summary)
        return
    from rich.console import Console

    Console().print(pareto_table(summary))


@app.command()
@handle_errors
def dashboard(
    storage: Annotated[str | None, typer.Option(help=_STORAGE_HELP)] = None,
    study: Annotated[str | None, typer.Option(help="Print the page of this study (it must exist).")] = None,
    out_dir: Annotated[str, typer.Option(help=_OUT_DIR_HELP)] = "runs",
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8080,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (url, port, studies) once listening.")
    ] = False,
) -> None:
    """Start optuna-dashboard on the study storage; Ctrl+C stops it."""
    from automl.study.dashboard import make_dashboard

    board = make_dashboard(storage, host=host, port=port, out_dir=out_dir, study=study)
    try:
        if as_json:
            print_json(board.to_json())
        else:
            from rich.console import Console

            console = Console(highlight=False)
            console.print(f"optuna-dashboard: {board.url}", soft_wrap=True, markup=False)
            for name in [study] if study else board.studies:
                console.print(f"  {name}: {board.study_url(name)}", soft_wrap=True, markup=False)
        err = _stderr_console()
        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach it can read and edit the studies")
        err.print("Ctrl+C stops the dashboard")
        board.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        board.close()


def _exception_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(exit, abort, usage-error) classes of click and of the click copy Typer >= 0.20 vendors."""
    import click

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


def main() -> None:
    """Console-script entry point: usage errors become one line too; the process then ends without
    the interpreter's teardown (``_exit_now``)."""
    try:
        _main()
    except SystemExit as exc:
        if not _is_the_process():  # called in-process (a test, another program): exit as usual
            raise
        code = exc.code
        _exit_now(code if isinstance(code, int) else (0 if code is None else 1))


def _is_the_process() -> bool:
    """Whether this process was started to run the command: the ``automl`` console script, ``python
    cli.py`` or ``python -m cli`` (not pytest or another program that calls ``main``)."""
    entry = getattr(sys.modules.get("__main__"), "__file__", None)
    if not entry:
        return False
    return os.path.basename(entry) in ("automl", "automl.exe") or os.path.realpath(entry) == os.path.realpath(__file__)


def _exit_now(code: int) -> None:
    """End the process at once, once output is flushed, other threads are done and the exit
    handlers have run. Freeing PyTorch's and Optuna's modules one by one at interpreter shutdown took
    3-5 s after the work was done on a loaded 2-core machine (0.2 s this way): a --timeout search
    would end seconds past its deadline. Only for a real process (``main``), never in-process."""
    import atexit
    import contextlib
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)


def _main() -> None:
    exit_types, abort_types, click_errors = _exception_types()
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting with it.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except exit_types as exc:
        sys.exit(exc.exit_code)
    except abort_types:
        _stderr_console().print("[bold red]error:[/] aborted")
        sys.exit(EXIT_INTERRUPTED)
    except click_errors as exc:
        cmd = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            cmd = ctx.command_path
        hint = f" (see '{cmd} --help')" if cmd else ""
        _stderr_console().print(f"[bold red]error:[/] {exc.format_message()}{hint}", emoji=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
