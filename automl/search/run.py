"""The run object a trial reads (``TrialRun``): the search's settings, resolved once before any trial.

A protocol, so the study layer's ``StudyRun`` (automl/study/_run.py) is one without this package
importing it, and a test can pass any object with these attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from automl.runtime.latency import LatencySpec
    from automl.search.space import Space
    from automl.tasks import DataBundle, Task


class TrialRun(Protocol):
    """The run object a trial reads: the search's settings resolved once, before any trial
    (``automl.study._run.StudyRun`` is the one the search and workers build). Read, never changed."""

    task: Task
    bundle: DataBundle  # the data, on the training device
    space: Space
    epochs: int  # --epochs: the most a trial (each fold, with --cv) trains
    device: torch.device
    seed: int  # trial n trains with seed + n
    run_dir: Path  # trial checkpoints go to run_dir / "trials"
    trial_attrs: dict[str, Any]  # recorded first on every trial (the worker running it, ...)
    cv: int  # folds of cross-validation per trial (0: the validation split)
    latency: LatencySpec | None  # --max-latency-ms and its target (None: no network is timed)
    objectives: tuple[str, ...]  # --objectives; () or one name: the metric only
    score: str  # --score none | int8 | fp16
