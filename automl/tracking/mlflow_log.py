"""A study's trials in MLflow, through MLflow's own client (``mlflow.MlflowClient``), in the layout of
optuna-integration's ``MLflowCallback``: the experiment is named after the study; each trial is a run
named by its number, nested (``mlflow.parentRunId``) under one study run; the sampled parameters are
params; its value is one metric per objective; each epoch's ``train_loss``, ``val_loss``,
``val_<metric>`` and ``lr`` are steps; ``state``, ``direction``, the distributions and the prune or
fail reason are tags.

Why not that callback itself: optuna-integration is one more package, its callback logs a trial only
once it has ended (no per-epoch steps), and it keeps the active run in MLflow's process-wide state;
here each process holds its own ``MlflowClient`` and names every run by its id.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.tracking._check import allow_file_store, quick_failures, quiet_stdout

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from optuna.trial import FrozenTrial

ROLE = "automl.role"  # tag: study | trial | compress | variant
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_TAG_CHARS = 5000  # below MLflow's limit on a tag value (8000 on most stores)
EPOCH_KEYS = ("train_loss", "val_loss", "val_metric", "lr")


def _now_ms() -> int:
    return int(time.time() * 1000)


def client_for(uri: str) -> MlflowClient:
    """An ``MlflowClient`` of its own on ``uri`` (a file store allowed, failures kept short)."""
    from mlflow import MlflowClient

    allow_file_store(uri)
    quick_failures()
    quiet_stdout()
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created when missing (another process creating it at the
    same moment is fine: the second create fails and its id is read)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def study_run_id(client: MlflowClient, exp_id: str, study: str, tags: dict[str, str]) -> str:
    """The study run of ``study`` (the parent of its trial runs): the oldest run tagged as it, or a new
    one. A search creates it before its ``--jobs`` children start, so they find it."""
    found = client.search_runs([exp_id], filter_string=f"tags.`{ROLE}` = 'study'", max_results=1,
                               order_by=["attributes.start_time ASC"])
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=study, tags={ROLE: "study", "study": study, **tags})
    return run.info.run_id


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def metric_list(values: dict[str, float], step: int = 0) -> list[Any]:
    import math

    from mlflow.entities import Metric

    ts = _now_ms()
    return [Metric(k, float(v), ts, step) for k, v in values.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))]


def tag_list(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, _text(v, MAX_TAG_CHARS)) for k, v in values.items() if v is not None]


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(k, _text(v, MAX_PARAM_CHARS)) for k, v in params.items()])


class MlflowStudyLog:
    """The trials this process runs, logged to ``uri`` under the study's experiment and study run."""

    name = "MLflow"

    def __init__(self, uri: str, study: str, *, metric: str, objectives: tuple[str, ...],
                 directions: list[str], study_tags: dict[str, Any]) -> None:
        self.client = client_for(uri)
        self.metric = metric
        # one metric name per objective: the task's metric, then the costs (--objectives)
        self.objective_names = list(objectives) if len(objectives) > 1 else [metric]
        self.directions = directions
        self.experiment_id = experiment_id(self.client, study)
        self.study_run_id = study_run_id(self.client, self.experiment_id, study,
                                         {k: _text(v, MAX_TAG_CHARS) for k, v in study_tags.items()})
        self.runs: dict[int, str] = {}  # trial number -> its run id
        self.steps: dict[int, int] = {}  # trial number -> epoch records logged (the next step - 1)

    def _run_of(self, number: int) -> str:
        run_id = self.runs.get(number)
        if run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=str(number), tags={
                "mlflow.parentRunId": self.study_run_id, ROLE: "trial", "number": str(number)})
            run_id = self.runs[number] = run.info.run_id
        return run_id

    def trial_start(self, number: int, params: dict[str, Any]) -> None:
        log_params(self.client, self._run_of(number), params)

    def epoch(self, number: int, record: dict[str, float]) -> None:
        step = self.steps.get(number, 0) + 1  # a running count: cross-validation restarts epochs per fold
        self.steps[number] = step
        self._log_epoch(self._run_of(number), record, step)

    def _log_epoch(self, run_id: str, record: dict[str, float], step: int) -> None:
        values = {("val_" + self.metric if k == "val_metric" else k): record[k] for k in EPOCH_KEYS if k in record}
        self.client.log_batch(run_id, metrics=metric_list(values, step))

    def trial_end(self, trial: FrozenTrial) -> None:
        fresh = trial.number not in self.runs
        run_id = self._run_of(trial.number)
        if fresh and trial.params:  # started elsewhere (never here): its params now
            log_params(self.client, run_id, trial.params)
        history = trial.user_attrs.get("history") or []
        logged = self.steps.pop(trial.number, 0)
        for step, record in enumerate(history[logged:], logged + 1):  # epochs not seen live (a direct fit)
            if isinstance(record, dict):
                self._log_epoch(run_id, record, step)
        if trial.values is not None:
            values = dict(zip(self.objective_names, trial.values, strict=False))
            self.client.log_batch(run_id, metrics=metric_list(values))
        attrs = trial.user_attrs
        tags = {
            "number": str(trial.number), "state": trial.state.name,
            "direction": self.directions[0] if len(self.directions) == 1 else str(self.directions),
            "datetime_start": str(trial.datetime_start), "datetime_complete": str(trial.datetime_complete),
            **{f"{k}_distribution": str(v) for k, v in trial.distributions.items()},
            **{k: attrs[k] for k in ("prune_reason", "fail_reason", "pruned_at_epoch", "stopped", "epochs",
                                     "seconds", "device", "n_params", "worker") if k in attrs},
        }
        self.client.log_batch(run_id, tags=tag_list(tags))
        self.client.set_terminated(run_id, "FAILED" if trial.state.name == "FAIL" else "FINISHED")
        self.runs.pop(trial.number, None)

    def finish(self, *, artifacts: list[Path], metrics: dict[str, float], tags: dict[str, Any], end: bool) -> None:
        """The study run's summary: ``artifacts`` (best.json, the search result), best figures, and,
        from the process that owns the study (``end``), its end."""
        run_id = self.study_run_id
        self.client.log_batch(run_id, metrics=metric_list(metrics), tags=tag_list(tags))
        for path in artifacts:
            if Path(path).is_file():
                self.client.log_artifact(run_id, str(path))
        if end:
            self.client.set_terminated(run_id, "FINISHED")

    def close(self) -> None:
        """Trials left open (the loop was interrupted) end as killed."""
        for run_id in self.runs.values():
            self.client.set_terminated(run_id, "KILLED")
        self.runs.clear()
