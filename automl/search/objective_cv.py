"""Cross-validated trials, for ``automl.search.objective.Objective``: K folds of the training + validation
rows, the running mean reported after each fold (the trial pruner's steps are folds), a refit on
every row for a trial that could be its family's best, and the deadline (``--timeout``) between
folds: a trial stopped after at least one fold keeps the completed folds' mean.

A mixin: its methods use the objective's ``task``, ``bundle``, ``observer``, ``device``,
``metric_fn``, ``augment_fn``, ``deadline``, ``objectives``, ``guard``, ``_folds``, ``_could_be_best``
and ``_keep_if_best``. ``fit`` is looked up in ``automl.search.objective`` at call time, so the trial paths
share one training entry point (tests replace it there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import torch

from automl.exceptions import DeadlineReached
from automl.search.objective_deadline import mark_deadline_stop
from automl.train import evaluate

if TYPE_CHECKING:
    from automl.models import Arch, ModelFamily, Params
    from automl.search.objective import SearchObserver
    from automl.study import InterruptGuard
    from automl.tasks import DataBundle, Task
    from automl.train import AugmentFn, FitResult, MetricFn, TrainConfig

#: training rows a directly fitted family's training loss is measured on (a tree walk costs like a
#: prediction; the validation metric always uses the whole split)
DIRECT_TRAIN_ROWS = 10_000


class CrossValidation:
    """K-fold trials of the epoch loop and of directly fitted families (see the module text)."""

    task: Task
    train_fn: Callable[..., FitResult]  # the training loop (Objective.train_fn: automl.train.fit)
    bundle: DataBundle
    observer: SearchObserver
    device: torch.device
    metric_fn: MetricFn
    augment_fn: AugmentFn | None
    deadline: float | None
    objectives: tuple[str, ...]
    guard: InterruptGuard
    _folds: list[tuple[torch.Tensor, torch.Tensor]]
    _could_be_best: Callable[[optuna.Trial, float], bool]  # Objective's methods
    _is_candidate: Callable[[optuna.Trial, float], bool]
    direct_oof: Any  # a direct fit's out-of-fold predictions, for the objective's _keep_if_best
    _keep_if_best: Callable[..., None]

    def _cross_validate(self, trial: optuna.Trial, params: Params, cfg: TrainConfig,
                        history: list[dict[str, float]], seed: int) -> tuple[torch.nn.Module, float]:
        """Train on K-1 folds and score the held-out fold, K times; report the running mean after
        each fold (the trial pruner's steps are folds). A trial that could be the study's best is
        refitted on all training + validation rows, and that model is kept."""
        b = self.bundle
        x_all, y_all = torch.cat([b.x_train, b.x_val]), torch.cat([b.y_train, b.y_val])
        loss_fn = self.task.loss_fn(cfg.label_smoothing)
        scores: list[float] = []
        model: torch.nn.Module | None = None
        stopped = False  # the deadline ended a fold: the completed folds are the trial
        oof: list[tuple[torch.Tensor, torch.Tensor]] = []  # (held-out rows, the fold model's outputs)

        def progress(fold: int) -> Callable[[int, dict[str, float]], None]:
            def on_epoch(epoch: int, record: dict[str, float]) -> None:
                history.append({**record, "fold": fold})
                self.observer.on_epoch(trial.number, epoch, cfg.epochs, record)
            return on_epoch

        for fold, (tr, va) in enumerate(self._folds, 1):
            torch.manual_seed(seed)
            fold_model = self.task.build_model(params, b.meta)
            try:
                result = self.train_fn(fold_model, x_all[tr], y_all[tr], x_all[va], y_all[va], cfg, loss_fn=loss_fn,
                             metric_fn=self.metric_fn, augment_fn=self.augment_fn, on_epoch=progress(fold),
                             deadline=self.deadline)
            except DeadlineReached:
                if not scores:  # not one fold done: nothing to keep (the trial is pruned)
                    raise
                stopped = True
                break
            model = fold_model
            scores.append(float(result.val_metric))
            oof.append((va, self._outputs(fold_model, x_all[va])))
            self._report_fold(trial, fold, scores)
        value = sum(scores) / len(scores)
        trial.set_user_attr("cv_scores", [round(v, 6) for v in scores])
        assert model is not None
        if stopped:  # no time for a refit: the last completed fold's model is kept
            mark_deadline_stop(trial, f"after fold {len(scores)} of {len(self._folds)}", value, self.task.metric)
            trial.set_user_attr("refit", False)
            self._keep_if_best(trial, model, params, value)
            return model, value
        if self._could_be_best(trial, value) or self._is_candidate(trial, value):
            torch.manual_seed(seed)
            final = self.task.build_model(params, b.meta)
            tr, va = self._folds[-1]
            try:  # all rows; the last fold's held-out rows only feed the (now meaningless) val figures
                self.train_fn(final, x_all, y_all, x_all[va], y_all[va], cfg, loss_fn=loss_fn, metric_fn=self.metric_fn,
                    augment_fn=self.augment_fn, deadline=self.deadline)
                model = final
                trial.set_user_attr("refit", True)
            except DeadlineReached:  # no time for the refit: keep the last fold's model
                trial.set_user_attr("refit", False)
            self._keep_if_best(trial, model, params, value, oof=self._oof(oof, len(x_all)))
        return model, value

    def _direct_folds(self, trial: optuna.Trial, family: ModelFamily, params: Params, seed: int,
                      history: list[dict[str, float]], start: float) -> tuple[torch.nn.Module, Arch, float]:
        """--cv for a directly fitted family: fit on K-1 folds, score the held-out one, K times (the
        running mean reported after each fold); a possible family best is refitted on every row."""
        import dataclasses

        b = self.bundle
        x_all, y_all = torch.cat([b.x_train, b.x_val]), torch.cat([b.y_train, b.y_val])
        loss_fn, scores = self.task.loss_fn(0.0), []
        model: torch.nn.Module | None = None
        arch: Arch = {}
        oof: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.direct_oof = None  # set once every fold completed
        for fold, (tr, va) in enumerate(self._folds, 1):
            part = dataclasses.replace(b, x_train=x_all[tr], y_train=y_all[tr], x_val=x_all[va], y_val=y_all[va])
            try:
                fitted = family.fit_direct(params, part, seed=seed, deadline=self.deadline)
            except DeadlineReached:
                if not scores:  # not one fold done: nothing to keep (the trial is pruned)
                    raise
                value = sum(scores) / len(scores)
                trial.set_user_attr("cv_scores", [round(v, 6) for v in scores])
                trial.set_user_attr("refit", False)
                mark_deadline_stop(trial, f"after fold {len(scores)} of {len(self._folds)}", value,
                                   self.task.metric)
                return model, arch, value
            model, arch = fitted
            model.to(self.device)
            val_loss, val_metric = evaluate(model, part.x_val, part.y_val, loss_fn, self.metric_fn)
            train_loss, _ = evaluate(model, part.x_train[:DIRECT_TRAIN_ROWS], part.y_train[:DIRECT_TRAIN_ROWS],
                                     loss_fn, self.metric_fn)
            scores.append(float(val_metric))
            oof.append((va, self._outputs(model, part.x_val)))
            history.append({"epoch": 1, "fold": fold, "train_loss": train_loss, "val_loss": val_loss,
                            "val_metric": val_metric, "seconds": time.perf_counter() - start})
            self._report_fold(trial, fold, scores)
        value = sum(scores) / len(scores)
        trial.set_user_attr("cv_scores", [round(v, 6) for v in scores])
        self.direct_oof = self._oof(oof, len(x_all))  # for _keep_if_best, called by the objective
        if self._could_be_best(trial, value) or self._is_candidate(trial, value):
            full = dataclasses.replace(b, x_train=x_all, y_train=y_all)
            try:
                model, arch = family.fit_direct(params, full, seed=seed, deadline=self.deadline)
                trial.set_user_attr("refit", True)
            except DeadlineReached:  # no time for the refit: keep the last fold's model
                trial.set_user_attr("refit", False)
        return model, arch, value

    def _outputs(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A fold model's raw outputs on its held-out rows, on the CPU (for the out-of-fold predictions)."""
        from automl.train import predict_logits

        with torch.no_grad():
            return predict_logits(model, x).cpu()

    def _oof(self, parts: list[tuple[torch.Tensor, torch.Tensor]], rows: int) -> Any:
        """The out-of-fold predictions of every training + validation row (``automl.search.ensemble``'s
        float32 layout), or None unless every fold completed."""
        from automl.search.ensemble import as_predictions

        if len(parts) != len(self._folds) or not parts:
            return None
        regression = not self.task.metric_spec.labels
        first = as_predictions(parts[0][1], regression)
        out = np.zeros((rows, *first.shape[1:]), dtype=np.float32)
        for idx, raw in parts:
            out[idx.cpu().numpy()] = as_predictions(raw, regression)
        return out

    def _report_fold(self, trial: optuna.Trial, fold: int, scores: list[float]) -> None:
        """Report the running mean after ``fold`` (the pruner's steps are folds); TrialPruned when it says so."""
        mean = sum(scores) / len(scores)
        if self.objectives:  # Optuna's trial.report refuses multi-objective studies; folds are not epochs
            return
        with self.guard.critical():
            trial.report(mean, fold)
            prune = trial.should_prune()
        if prune:
            raise optuna.TrialPruned(f"trial pruner stopped it after fold {fold} of {len(self._folds)} "
                                     f"(mean val {self.task.metric} {mean:.4f})")
