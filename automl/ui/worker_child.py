"""The entry point of an ``automl search --jobs N`` child process (``automl.study._jobs`` starts it):
``run_worker`` with its progress as plain lines on stderr, which the parent points at the worker's log
file. It lives in the UI layer because it renders that progress (``PlainSearchObserver``); the study
package below it never imports a renderer.
"""

from __future__ import annotations

import json
import os
import sys

from automl.exceptions import EXIT_INTERRUPTED, exit_code


def child_main(raw: str) -> int:
    """Entry point of a ``--jobs`` child: ``run_worker`` with its trials and epochs as plain lines on
    stderr (the worker's log file); errors as one line there too, and the exit code the CLI would give them."""
    from automl.exceptions import AutomlError
    from automl.study import WorkerSettings, run_worker

    threads = os.environ.get("AUTOML_WORKER_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    from automl.ui.plain import PlainSearchObserver

    try:
        settings = WorkerSettings(**json.loads(raw))
        # Its progress as plain lines on stderr, which the parent points at workers/worker-<i>.log
        observer = PlainSearchObserver(total=settings.trials or None, stream=sys.stderr)
        observer.line(f"worker pid {os.getpid()} on study '{settings.study}' ({settings.device})")
        result = run_worker(settings, observer=observer)
    except (AutomlError, KeyboardInterrupt) as exc:
        if isinstance(exc, AutomlError):
            sys.stderr.write(f"error: {exc}\n")
        return exit_code(exc)
    return EXIT_INTERRUPTED if result.interrupted else 0
