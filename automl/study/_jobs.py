"""``automl search --jobs N``: N worker processes on one study, supervised by the search process.

Each child is a quiet ``automl worker`` (``automl.ui.worker_child.child_main``) on the same storage and
output folder; it keeps best.pt current like any worker, and ends at the parent's deadline. The parent forwards
Ctrl-C once, fails the running trial of a child that died (and queues its retry), runs the queued
retries left at the end in one more child, and reports finished trials to the observer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from automl.exceptions import EXIT_INTERRUPTED, TrainingError
from automl.study._loop import WorkStats
from automl.study._reaper import is_retry, n_waiting, reap_worker, worker_id
from automl.study._run import StudyRun

if TYPE_CHECKING:
    from automl.search.objective import SearchObserver

POLL_S = 0.5  # how often the parent looks at its children and the study (seconds)
LATE_S = 2.0  # a child still running this long after the deadline (still starting up) is stopped
# The child's entry point lives in the UI layer, which renders its progress (automl.ui.worker_child).
_CHILD = "import sys; from automl.ui.worker_child import child_main; sys.exit(child_main(sys.argv[1]))"


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen
    log: Path
    wid: str
    done: bool = False
    late: bool = False  # stopped by the parent after the deadline


def split_trials(total: int | None, jobs: int) -> list[int | None]:
    """``total`` trials over ``jobs`` workers as evenly as possible (None: each until the deadline)."""
    if total is None:
        return [None] * jobs
    return [total // jobs + (1 if i < total % jobs else 0) for i in range(jobs)]


def child_devices(device: str, jobs: int) -> list[str]:
    """The device of each of ``jobs`` workers: with ``auto``/``cuda`` and GPUs present, round robin
    over every visible GPU (so ``--jobs 8`` on 2 GPUs puts 4 trials on each, and ``--jobs 4`` on one
    GPU runs 4 trials side by side on it); an explicit ``cuda:K`` or ``cpu`` is kept for all.
    ``CUDA_VISIBLE_DEVICES`` decides which GPUs are visible."""
    import torch

    n = torch.cuda.device_count() if device in ("auto", "cuda") and torch.cuda.is_available() else 0
    if n >= 1:
        return [f"cuda:{i % n}" for i in range(jobs)]
    return [device] * jobs


def _spawn(args: dict[str, object], log: Path, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "AUTOML_WORKER_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        # A session of its own: a terminal Ctrl-C reaches only the parent, which forwards one SIGINT.
        return subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fh, env=env, start_new_session=True,
        )


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_children(
    run: StudyRun, *, jobs: int, trials: int | None, device: str, out: str, heartbeat: int, grace: int | None,
    observer: SearchObserver | None = None, tracking: dict[str, str | None] | None = None,
) -> WorkStats:
    """Run ``jobs`` worker processes on ``run.study`` and wait for them; returns what they did together.

    Ctrl-C is forwarded once to every child (each ends its trial, marked interrupted). A child that
    dies has its running trial failed and queued for retry; queued retries left at the end run in
    one more child. Raises TrainingError when every child failed before finishing a trial.
    ``tracking``: each child's ``mlflow`` and ``tensorboard`` (``WorkerSettings``): it logs its own trials.
    """
    from optuna.trial import TrialState

    study = run.study
    threads = max(1, (os.cpu_count() or 1) // jobs)
    devices = child_devices(device, jobs)
    # The children end at the parent's deadline, given as wall-clock time since they start later.
    deadline_at = None if run.deadline is None else time.time() + (run.deadline - time.monotonic())
    seen = {t.number for t in study.get_trials(deepcopy=False)}
    stats = WorkStats()
    errors: list[str] = []

    def start(i: int, n: int | None, drain: bool = False) -> _Child:
        args = {"storage": run.url, "study": study.study_name, "trials": n, "out": out, "device": devices[i % jobs],
                "seed": run.seed + 7919 * (i + 1), "heartbeat": heartbeat, "grace": grace, "drain": drain,
                "deadline_at": deadline_at, **{k: v for k, v in (tracking or {}).items() if v}}
        log = run.run_dir / "workers" / f"worker-{i}.log"
        proc = _spawn(args, log, threads)
        if observer is not None and hasattr(observer, "on_note"):
            what = "queued retries" if drain else (f"{n} trial(s)" if n is not None else "trials until the deadline")
            observer.on_note(f"worker {i} started (pid {proc.pid}, {devices[i % jobs]}, {what}); log: {log}")
        return _Child(i, proc, log, worker_id(proc.pid))

    def report() -> None:
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        for t in sorted((t for t in finished if t.number not in seen), key=lambda t: t.number):
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
                    if rc is None or c.done:
                        continue
                    c.done = True
                    if c.late:
                        stats.reaped += reap_worker(study, run.storage, c.wid, "was stopped at the deadline", run.retry)
                    elif rc not in (0, EXIT_INTERRUPTED) and not stats.interrupted:
                        how = f"died (signal {-rc})" if rc < 0 else f"exited with code {rc}"
                        stats.reaped += reap_worker(study, run.storage, c.wid, how, run.retry)
                        line = _last_line(c.log)
                        errors.append(f"worker {c.index} {how}" + (f": {line}" if line else ""))
                report()
                if all(c.done for c in children):
                    return
                if run.deadline is not None and time.monotonic() > run.deadline + LATE_S:
                    # A child stops its own trial at the deadline; one still importing or loading data
                    # would only start late and end at once.
                    for c in children:
                        if not c.late and c.proc.poll() is None:
                            c.late = True
                            c.proc.terminate()
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
                        reap_worker(study, run.storage, c.wid, "was stopped by a second Ctrl-C", run.retry)
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
        raise TrainingError(f"every worker failed; {errors[0]} (logs in {run.run_dir / 'workers'})")
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
