"""Many workers on one study: the trial loop, Ctrl-C handling, dead-worker clean-up, ``--jobs N``.

Every process that runs trials (``automl search``, each ``--jobs`` child, ``automl worker`` on any
machine) goes through :func:`work`. A trial records the worker that runs it (``host:pid``) in its
user attributes, so a dead worker's trial can be found, marked failed with a reason and retried once.

Trial accounting: ``n_trials`` counts *fresh* trials; a retry of a dead worker's trial (Optuna's
WAITING queue, system attribute ``failed_trial``) is run on top, so every requested trial is run
and a trial that died is run once more.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError, StorageError, TrainingError


class SearchInterrupted(TrainingError):
    """Ctrl-C before any trial completed: nothing to write; the CLI exits with code 130."""


MAX_RETRY = 1  # a trial whose worker died is run once more, not forever
POLL_S = 0.5  # how often the --jobs parent looks at its children and the study (seconds)


def worker_id(pid: int | None = None) -> str:
    """``host:pid`` — stored on every trial as user attribute ``worker``."""
    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


# --- Ctrl-C ---------------------------------------------------------------------------------------


class InterruptGuard:
    """SIGINT/SIGTERM handling for a trial loop.

    While a trial trains, the first Ctrl-C raises ``KeyboardInterrupt`` at once: the objective marks
    the trial failed ("interrupted") and the loop ends. Anywhere else (sampling, storage writes) it
    only sets ``requested`` and the loop stops before the next trial, so no storage write is cut in
    half. A second Ctrl-C raises at once. Outside the main thread no handler is installed.
    """

    def __init__(self) -> None:
        self.requested = False
        self._training = False
        self._critical = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.requested = True
        if self._training and not self._critical:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Wrap the training of one trial: an interrupt here ends the trial at once."""
        if self.requested:
            raise KeyboardInterrupt
        self._training = True
        try:
            yield
        finally:
            self._training = False

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """Wrap a storage write inside training: an interrupt waits until it is done."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if self.requested and self._training and not self._critical:
            raise KeyboardInterrupt


# --- dead workers ---------------------------------------------------------------------------------


def retry_callback(max_retry: int = MAX_RETRY) -> Callable[[Any, Any], None]:
    """Optuna's retry-a-stale-trial callback (``RetryFailedTrialCallback``, renamed
    ``RetryHeartbeatStaleTrialCallback`` in Optuna 4.9), re-queueing the trial without its
    failure attributes and with ``retry_of`` set."""
    import optuna

    base = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    base = base or optuna.storages.RetryFailedTrialCallback

    class _Retry(base):  # type: ignore[misc, valid-type]
        def __call__(self, study: Any, trial: Any) -> None:
            clean = copy.copy(trial)
            drop = ("fail_reason", "worker", "history", "epochs", "seconds", "prune_reason", "pruned_at_epoch")
            clean.user_attrs = {
                **{k: v for k, v in trial.user_attrs.items() if k not in drop},
                "retry_of": int(trial.system_attrs.get("failed_trial", trial.number)),
            }
            super().__call__(study, clean)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _Retry(max_retry=max_retry)


def is_retry(trial: Any) -> bool:
    """A trial re-queued for a dead worker's trial."""
    return "failed_trial" in trial.system_attrs


def fail_trial(study: Any, trial: Any, reason: str, retry: bool = True) -> bool:
    """Mark a RUNNING trial failed with ``fail_reason`` and queue its retry; False when another
    process got there first."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return False
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return False
    if retry:
        retry_callback()(study, storage.get_trial(trial._trial_id))
    return True


def sweep_stale(study: Any) -> list[int]:
    """Fail the trials whose heartbeat stopped (their worker died) and queue their retries.

    Optuna's own sweep does the same before each trial but cannot record why; this runs first.
    Returns the numbers of the trials it failed.
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = study._storage
    if not is_heartbeat_enabled(storage) or not hasattr(storage, "_get_stale_trial_ids"):
        return []
    grace = getattr(storage, "grace_period", None) or 2 * storage.get_heartbeat_interval()
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        trial = storage.get_trial(trial_id)
        who = trial.user_attrs.get("worker", "unknown worker")
        reason = f"worker {who} stopped sending heartbeats for more than {grace} s (process died?)"
        if fail_trial(study, trial, reason):
            failed.append(trial.number)
    return failed


def reap_worker(study: Any, wid: str, how: str) -> list[int]:
    """Fail the RUNNING trials of a worker known to be dead (a ``--jobs`` child) and queue retries."""
    from optuna.trial import TrialState

    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker") == wid and fail_trial(study, t, f"worker {wid} {how}"):
            failed.append(t.number)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead_local(study: Any) -> list[int]:
    """Fail the RUNNING trials of workers on this machine whose process is gone (a worker killed
    while using a journal file, which has no heartbeats) and queue their retries."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        wid = str(t.user_attrs.get("worker", ""))
        h, _, pid = wid.rpartition(":")
        dead = h == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))
        if dead and fail_trial(study, t, f"worker {wid} is no longer running (process died)"):
            failed.append(t.number)
    return failed


def n_waiting(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


# --- the trial loop -------------------------------------------------------------------------------


@dataclass
class WorkStats:
    """What one worker did."""

    fresh: int = 0
    retries: int = 0
    interrupted: bool = False
    reaped: list[int] = field(default_factory=list)


def work(
    study: Any,
    objective: Callable[[Any], float],
    *,
    n_trials: int | None,
    timeout: float | None = None,
    guard: InterruptGuard | None = None,
    on_trial_end: Callable[[Any], None] | None = None,
    drain: bool = False,
) -> WorkStats:
    """Run trials until ``n_trials`` fresh ones are done (None: until ``timeout`` or Ctrl-C).

    ``drain=True`` instead runs only the queued retries. Each trial is one ``study.optimize`` call, so
    Optuna's heartbeat thread and stale-trial sweep apply.
    """
    from automl.objective import TrialFailedError

    guard = guard or InterruptGuard()
    stats = WorkStats()
    start = time.monotonic()
    last: dict[str, Any] = {}

    def remember(_study: Any, trial: Any) -> None:
        last["trial"] = trial
        if on_trial_end is not None:
            on_trial_end(trial)

    while not guard.requested:
        if drain:
            if not n_waiting(study):
                break
        elif n_trials is not None and stats.fresh >= n_trials:
            break
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            break
        # Heartbeats first (they work across machines), then dead processes on this machine.
        stats.reaped += sweep_stale(study) + sweep_dead_local(study)
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailedError,), callbacks=[remember],
                           gc_after_trial=False)
        except KeyboardInterrupt:
            stats.interrupted = True
            break
        trial = last.pop("trial", None)
        if trial is None:
            break
        if is_retry(trial):
            stats.retries += 1
        else:
            stats.fresh += 1
    stats.interrupted = stats.interrupted or guard.requested
    return stats


# --- automl worker --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSettings:
    """Options of ``automl worker``; everything else comes from the study's stored ``automl`` config."""

    storage: str
    study: str
    trials: int | None = None
    timeout: float | None = None
    out: str = "runs"
    device: str = "auto"
    seed: int | None = None  # sampler seed; None: the stored seed + this process id
    heartbeat: int | None = None  # None: the stored value
    grace: int | None = None
    drain: bool = False
    finalize: bool = True

    def __post_init__(self) -> None:
        if self.trials is not None and self.trials < 0:
            raise ConfigError(f"--trials must be >= 0, got {self.trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.heartbeat is not None and self.heartbeat < 0:
            raise ConfigError(f"--heartbeat must be >= 0 seconds (0 = off), got {self.heartbeat}")
        if self.grace is not None and self.heartbeat and self.grace <= self.heartbeat:
            raise ConfigError(f"--grace ({self.grace} s) must be longer than --heartbeat ({self.heartbeat} s)")


@dataclass
class WorkerResult:
    """What ``run_worker`` returns (and ``automl worker --json`` prints)."""

    study: str
    storage: str
    worker: str
    trials_run: int
    retries_run: int
    reaped: list[int]
    interrupted: bool
    counts: dict[str, int]
    best_trial: int | None
    best_value: float | None
    best_pt: str | None
    metric: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        from automl.study import redact

        out = asdict(self)
        out["storage"] = redact(self.storage)
        return out


def load_existing_study(storage: Any, url: str, name: str, sampler: Any = None, pruner: Any = None) -> Any:
    """``optuna.load_study``; a StorageError that lists the known names when ``name`` is not there."""
    import optuna

    from automl.study import first_line, redact, study_names

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        known = study_names(storage)
        listed = ", ".join(known) if known else "none"
        raise StorageError(f"no study '{name}' in {redact(url)} (known studies: {listed})") from None
    except Exception as exc:
        raise StorageError(f"cannot load study '{name}' from {redact(url)}: {first_line(exc)}") from None


def stored_config(study: Any) -> dict[str, Any]:
    config = study.user_attrs.get("automl")
    if not isinstance(config, dict) or "task" not in config or "space" not in config:
        raise StorageError(
            f"study '{study.study_name}' has no automl search configuration "
            "(create it with 'automl search --storage URL --study NAME')"
        )
    return config


def check_worker(settings: WorkerSettings) -> None:
    """Open the storage and find the study and its configuration, so bad input fails before any
    progress display."""
    from automl.study import open_storage, resolve_storage

    url = resolve_storage(settings.storage, Path(settings.out))
    if "://" not in url and not Path(url).is_file():
        raise StorageError(f"journal file {url} does not exist (a worker joins a study that 'automl search' created)")
    stored_config(load_existing_study(open_storage(url), url, settings.study))


def run_worker(settings: WorkerSettings, observer: Any = None) -> WorkerResult:
    """Join an existing study: rebuild task, data and space from its stored configuration, run
    trials, and write best.pt when this machine holds the best trial's weights."""
    import optuna

    from automl.objective import Objective
    from automl.space import parse_space
    from automl.study import (
        counts,
        finalize_best,
        make_pruner,
        make_sampler,
        open_storage,
        resolve_device,
        resolve_storage,
        silence_optuna,
    )
    from automl.tasks import DataConfig, get_task

    start = time.perf_counter()
    silence_optuna()
    out = Path(settings.out)
    url = resolve_storage(settings.storage, out)
    probe = open_storage(url)
    study = load_existing_study(probe, url, settings.study)
    config = stored_config(study)
    heartbeat = config.get("heartbeat", 0) if settings.heartbeat is None else settings.heartbeat
    grace = settings.grace if settings.grace is not None else config.get("grace")
    storage = open_storage(url, heartbeat_interval=heartbeat or None, grace_period=grace) if heartbeat else probe
    task = get_task(config["task"])
    space = parse_space(config["space"], config.get("space_source", "<stored>"))
    epochs = int(config["epochs"])
    base_seed = int(config.get("seed", 0))
    sampler_seed = settings.seed if settings.seed is not None else base_seed + os.getpid()
    sampler = make_sampler(config.get("sampler", "tpe"), sampler_seed, space)
    pruner = make_pruner(config.get("pruner", "median"), epochs)
    study = optuna.load_study(study_name=settings.study, storage=storage, sampler=sampler, pruner=pruner)
    device = resolve_device(settings.device)
    data_cfg = DataConfig(**config["data"])
    bundle = task.load_data(data_cfg).to(device)
    run_dir = out / study.study_name
    wid = worker_id()
    if observer is not None and hasattr(observer, "set_direction"):
        observer.set_direction(task.direction, task.metric)
    with InterruptGuard() as guard:
        objective = Objective(task, bundle, space, epochs=epochs, device=device, seed=base_seed,
                              ckpt_dir=run_dir / "trials", observer=observer, guard=guard, worker=wid)
        stats = work(study, objective, n_trials=settings.trials, timeout=settings.timeout, guard=guard,
                     on_trial_end=observer.on_trial_end if observer is not None else None, drain=settings.drain)
    best_trial = best_value = None
    best_pt = None
    with contextlib.suppress(ValueError):
        best_trial, best_value = study.best_trial.number, float(study.best_value)
    if settings.finalize and best_trial is not None:
        # Only when this machine kept the best trial's weights: never retrain in a worker.
        settings_like = _SettingsView(seed=base_seed, epochs=epochs)
        result = finalize_best(study, task, bundle, data_cfg, run_dir, url, settings_like, start, device,
                               retrain=False)
        best_pt = result.best_pt if result is not None else None
    return WorkerResult(
        study=study.study_name, storage=url, worker=wid, trials_run=stats.fresh, retries_run=stats.retries,
        reaped=stats.reaped, interrupted=stats.interrupted, counts=counts(study), best_trial=best_trial,
        best_value=best_value, best_pt=best_pt, metric=task.metric, seconds=round(time.perf_counter() - start, 2),
    )


@dataclass(frozen=True)
class _SettingsView:
    """The two settings ``finalize_best`` reads (seed of the trials, epochs of a retrain)."""

    seed: int
    epochs: int


# --- automl search --jobs N -----------------------------------------------------------------------


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen
    log: Path
    trials: int | None
    wid: str
    reaped: bool = False


def split_trials(total: int | None, jobs: int) -> list[int | None]:
    """``total`` trials over ``jobs`` workers as evenly as possible (None: each until the timeout)."""
    if total is None:
        return [None] * jobs
    return [total // jobs + (1 if i < total % jobs else 0) for i in range(jobs)]


def child_devices(device: str, jobs: int) -> list[str]:
    """One GPU per worker, round robin, when several exist; else the same device for all."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        n = torch.cuda.device_count()
        return [f"cuda:{i % n}" for i in range(jobs)]
    return [device] * jobs


def _spawn(index: int, args: dict[str, Any], log: Path, threads: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["AUTOML_WORKER_THREADS"] = str(threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        # A session of its own: a terminal Ctrl-C reaches only the parent, which forwards one SIGINT.
        return subprocess.Popen(
            [sys.executable, "-m", "automl.workers", json.dumps(args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fh, env=env, start_new_session=True,
        )


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_children(
    study: Any, url: str, *, jobs: int, trials: int | None, timeout: float | None, out: str, device: str,
    seed: int, heartbeat: int, grace: int | None, observer: Any = None,
) -> WorkStats:
    """Run ``jobs`` worker processes on ``study`` and wait for them; returns what they did together.

    Ctrl-C is forwarded once to every child (each ends its trial, marked interrupted). A child that
    dies has its running trial failed and queued for retry; queued retries left at the end run in
    one more child.
    """
    from optuna.trial import TrialState

    run_dir = Path(out) / study.study_name
    threads = max(1, (os.cpu_count() or 1) // jobs)
    devices = child_devices(device, jobs)
    seen = {t.number for t in study.get_trials(deepcopy=False)}
    stats = WorkStats()
    errors: list[str] = []

    def args(i: int, n: int | None, drain: bool = False) -> dict[str, Any]:
        return {"storage": url, "study": study.study_name, "trials": n, "timeout": timeout, "out": out,
                "device": devices[i % jobs], "seed": seed + 7919 * (i + 1), "heartbeat": heartbeat,
                "grace": grace, "drain": drain, "finalize": False}

    def start(i: int, n: int | None, drain: bool = False) -> _Child:
        log = run_dir / "workers" / f"worker-{i}.log"
        proc = _spawn(i, args(i, n, drain), log, threads)
        return _Child(i, proc, log, n, worker_id(proc.pid))

    def report() -> None:
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                            TrialState.FAIL))
                    if t.number not in seen]
        for t in sorted(finished, key=lambda t: t.number):
            seen.add(t.number)
            if is_retry(t):
                stats.retries += 1
            else:
                stats.fresh += 1
            if observer is not None:
                observer.on_trial_end(t)

    def wait_all(children: list[_Child]) -> None:
        interrupts = 0
        while True:
            try:
                for c in children:
                    rc = c.proc.poll()
                    if rc is None or c.reaped:
                        continue
                    c.reaped = True
                    if rc not in (0, 130) and not stats.interrupted:
                        how = f"died (signal {-rc})" if rc < 0 else f"exited with code {rc}"
                        stats.reaped += reap_worker(study, c.wid, how)
                        line = _last_line(c.log)
                        errors.append(f"worker {c.index} {how}" + (f": {line}" if line else ""))
                report()
                if all(c.reaped for c in children):
                    return
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                interrupts += 1
                stats.interrupted = True
                for c in children:
                    if c.proc.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            c.proc.send_signal(signal.SIGINT if interrupts == 1 else signal.SIGKILL)
                if interrupts > 1:
                    for c in children:
                        c.proc.wait()
                        reap_worker(study, c.wid, "was stopped by a second Ctrl-C")
                    raise

    children = [start(i, n) for i, n in enumerate(split_trials(trials, jobs)) if n is None or n > 0]
    with _raise_on_interrupt():
        try:
            wait_all(children)
            if not stats.interrupted and n_waiting(study):
                children.append(start(jobs, 0, drain=True))
                wait_all(children[-1:])
        finally:
            for c in children:
                if c.proc.poll() is None:
                    c.proc.kill()
                    c.proc.wait()
    report()
    if errors and stats.fresh + stats.retries == 0:
        raise TrainingError(f"every worker failed; {errors[0]} (logs in {run_dir / 'workers'})")
    return stats


@contextlib.contextmanager
def _raise_on_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt here, even where the shell started us with SIGINT
    ignored (a background job)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _child_main(raw: str) -> int:
    """Entry point of a ``--jobs`` child: a quiet ``run_worker``; errors as one line on stderr."""
    from automl.exceptions import AutomlError

    threads = os.environ.get("AUTOML_WORKER_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    try:
        result = run_worker(WorkerSettings(**json.loads(raw)))
    except AutomlError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
