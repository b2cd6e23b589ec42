"""A study opened by this process, with what its trials and its best.pt need."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    import torch
    from optuna.storages import BaseStorage

    from automl.runtime.latency import LatencySpec
    from automl.search.space import Space
    from automl.study._reaper import RetryCallback
    from automl.tasks import DataBundle, DataConfig, Task

#: seconds kept free before the deadline for the first best.pt write (scoring on the validation and
#: test splits, saving): about 1 s for a small network on a loaded 2-core machine; later writes are timed
FIRST_WRITE_S = 1.0


@dataclass
class StudyRun:
    """A study opened by this process with everything its trials and its best.pt need.

    ``deadline`` is a ``time.monotonic()`` value (None: no deadline); ``write_seconds`` is the longest
    best.pt write so far, kept free before the deadline so the last write fits in the budget.
    """

    study: optuna.Study
    storage: BaseStorage  # the storage object the study was opened on (the reaper writes through it)
    retry: RetryCallback  # the retry callback of dead workers' trials (``_reaper.retry_callback``)
    url: str
    task: Task
    space: Space
    data_cfg: DataConfig
    device: torch.device
    run_dir: Path
    epochs: int
    seed: int  # trial n trains with seed + n
    trial_attrs: dict[str, str] = field(default_factory=dict)  # recorded first on every trial (worker, …)
    notes: list[str] = field(default_factory=list)  # for the user (e.g. the storage was switched for --jobs)
    deadline: float | None = None
    write_seconds: float = 0.0
    cv: int = 0  # folds of cross-validation per trial (0: the plain validation split)
    objectives: tuple[str, ...] = ()  # --objectives (automl.search.moo); () or one name: the metric only
    latency: LatencySpec | None = None  # the latency budget and target (None: none)
    score: str = "none"  # --score int8 | fp16 (automl.runtime.int8): trials are judged quantized

    @functools.cached_property
    def bundle(self) -> DataBundle:
        """The data, loaded once and moved to the training device (only when something needs it)."""
        bundle = self.task.load_data(self.data_cfg).to(self.device)
        self.task.bind(bundle)  # the metric fitted to the data, the class weights computed
        from automl.study._family_race import races, record_chance

        sampler = str((self.study.user_attrs.get("automl") or {}).get("sampler") or "tpe")
        if races(self.space, sampler):  # a --jobs search's parent never loads the data
            record_chance(self.study, self.task, bundle)
        return bundle

    def train_deadline(self) -> float | None:
        """When training must stop (``time.monotonic()``): the deadline less the longest best.pt write
        (at least ``FIRST_WRITE_S`` before one was timed: a trial stopped by the deadline is written
        after it)."""
        return None if self.deadline is None else self.deadline - max(self.write_seconds, FIRST_WRITE_S)
