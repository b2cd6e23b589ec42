"""The only module that sees an Optuna trial: sample, build, fit, report, trial-prune, keep.

Each trial records its user attributes: epochs run, seconds, device, parameter count, per-epoch
history, and why it was pruned or failed.
"""

from __future__ import annotations

import contextlib
import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from automl.artifacts import save_checkpoint
from automl.exceptions import DeadlineReached, NonFiniteLossError, TrialFailedError
from automl.search.costs import Costs
from automl.search.objective_cv import DIRECT_TRAIN_ROWS, CrossValidation
from automl.search.objective_deadline import LastEpoch, cannot_catch_up, mark_deadline_stop
from automl.search.space import sample
from automl.train import evaluate, fit, train_config_from_params

if TYPE_CHECKING:
    from automl.search.run import TrialRun


class SearchObserver:
    """Receives progress events; the CLI draws them with Rich. The default does nothing."""

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None:
        """A trial began with these sampled parameters."""

    def on_epoch(self, number: int, epoch: int, epochs: int, record: dict[str, float]) -> None:
        """A trial finished an epoch; ``record`` holds train_loss, val_loss, val_metric."""

    def on_trial_end(self, trial: optuna.trial.FrozenTrial) -> None:
        """A trial ended (complete, pruned or failed)."""

    def on_note(self, message: str) -> None:
        """Something the user should know (e.g. the storage was switched for --jobs)."""


class _NoGuard:
    """Stand-in for ``automl.study.InterruptGuard`` when no Ctrl-C handling is installed."""

    requested = False

    def training(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def critical(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def trial_checkpoint_path(ckpt_dir: Path, number: int) -> Path:
    return Path(ckpt_dir) / f"trial-{number}.pt"


class Objective(CrossValidation):
    """Callable for ``study.optimize`` over one run object (``TrialRun``); the data bundle is already
    on the training device. What a trial costs to deploy is measured by the ``Costs`` it holds.

    ``run.trial_attrs`` are recorded on each trial before anything else (the worker running it, so a
    dead worker's trial can be found). ``deadline`` is a ``time.monotonic()`` value: training still
    running then stops, and the trial completes with its last completed epoch's weights and value,
    marked ``stopped = "deadline"`` (``automl.search.objective_deadline``); stopped before its first epoch
    ended, it is pruned with the reason "deadline".
    """

    @staticmethod
    def train_fn(*args: Any, **kwargs: Any) -> Any:
        """The training loop (``automl.train.fit``), looked up in this module when called, so the
        cross-validation folds use the same one (tests replace ``automl.search.objective.fit``)."""
        return fit(*args, **kwargs)

    def __init__(self, run: TrialRun, *, observer: SearchObserver | None = None, guard: Any = None,
                 deadline: float | None = None) -> None:
        from automl.search.moo import is_multi

        self.run = run
        self.task, self.bundle, self.space, self.device = run.task, run.bundle, run.space, run.device
        self.ckpt_dir = Path(run.run_dir) / "trials"
        self.observer = observer or SearchObserver()
        self.guard = guard or _NoGuard()
        self.deadline = deadline
        self.metric_fn = run.task.metric_fn()
        self.augment_fn = run.task.augment_fn(run.bundle.meta)
        self.objectives = tuple(run.objectives) if is_multi(run.objectives) else ()  # () : the metric only
        self._folds: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.direct_oof: Any = None  # a cross-validated direct fit's out-of-fold predictions (objective_cv)
        if run.cv > 1:  # K folds of the training + validation rows, the same for every trial
            from automl.search.cv import fold_indices

            bundle = run.bundle
            y = torch.cat([bundle.y_train, bundle.y_val]).cpu().numpy()
            stratify = run.task.stratified
            dev = bundle.y_train.device
            self._folds = [(torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev))
                           for a, b in fold_indices(y, run.cv, run.seed, stratify)]
        self.costs = Costs(run, self.metric_fn, self.guard, cross_validated=bool(self._folds))

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        for key, value in self.run.trial_attrs.items():  # first, so a dead worker's trial can be found and retried
            trial.set_user_attr(key, value)
        params = sample(trial, self.space)
        self.observer.on_trial_start(trial.number, params)
        seed = self.run.seed + trial.number
        torch.manual_seed(seed)
        try:
            family = self.task.model_family(params)
            model = None if family.direct_fit else self.task.build_model(params, self.bundle.meta)
        except ValueError as exc:
            trial.set_user_attr("fail_reason", f"cannot build the model: {exc}")
            raise TrialFailedError(f"cannot build the model: {exc}") from None
        self.costs.start_trial(trial, family)
        if model is None:
            return self._fit_direct(trial, family, params, seed)
        if self.run.latency is not None:  # before any epoch: an over-budget network is never trained
            t0 = time.perf_counter()
            reason = self.costs.over_latency_budget(trial, model, self.task.arch_from_params(params, self.bundle.meta))
            if reason is not None:
                self._record(trial, [], t0, reason=reason, pruned_at=0)
                raise optuna.TrialPruned(reason)
        cfg = train_config_from_params(params, epochs=self.run.epochs, seed=seed)
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("n_params", int(sum(p.numel() for p in model.parameters())))
        costs = self.costs.measure(trial, model, params)  # measured before any training
        history: list[dict[str, float]] = []
        start = time.perf_counter()
        last = LastEpoch() if self.deadline is not None else None  # what a deadline-stopped trial keeps

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            history.append(record)
            if last is not None:
                last.keep(model)
            if self.objectives:  # Optuna's trial.report refuses multi-objective studies
                self.observer.on_epoch(trial.number, epoch, cfg.epochs, record)
                self.costs.prune(trial, epoch, record["val_metric"], costs, cfg.epochs)
                return
            with self.guard.critical():  # a Ctrl-C waits for the storage write
                trial.report(record["val_metric"], epoch)
                prune = trial.should_prune()
            self.observer.on_epoch(trial.number, epoch, cfg.epochs, record)
            if prune:
                raise optuna.TrialPruned(
                    f"trial pruner stopped it after epoch {epoch} "
                    f"(val {self.task.metric} {record['val_metric']:.4f})"
                )
            if self.deadline is not None and (why := cannot_catch_up(
                    trial.study, trial.number, epoch, cfg.epochs, record["val_metric"],
                    time.perf_counter() - start, self.deadline, time.monotonic())):
                raise optuna.TrialPruned(f"stopped after epoch {epoch}: {why}")

        bundle = self.bundle
        try:
            with self.guard.training():
                if self._folds:
                    model, value = self._cross_validate(trial, params, cfg, history, seed)
                else:
                    value = fit(
                        model, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val, cfg,
                        loss_fn=self.task.loss_fn(cfg.label_smoothing), metric_fn=self.metric_fn,
                        augment_fn=self.augment_fn, on_epoch=on_epoch, deadline=self.deadline,
                    ).val_metric
        except KeyboardInterrupt:
            # Optuna marks the trial failed and re-raises; the loop then stops.
            self._record(trial, history, start, fail="interrupted (Ctrl-C) during training")
            raise
        except optuna.TrialPruned as exc:
            self._record(trial, history, start, reason=str(exc), pruned_at=len(history))
            raise
        except NonFiniteLossError as exc:
            self._record(trial, history, start, reason=str(exc), pruned_at=exc.epoch)
            raise optuna.TrialPruned(str(exc)) from None
        except DeadlineReached as exc:
            if last is None or not last.restore(model):  # stopped before its first epoch ended: nothing to keep
                self._record(trial, history, start, reason=str(exc), pruned_at=exc.epochs)
                raise optuna.TrialPruned(str(exc)) from None
            value = history[-1]["val_metric"]
            mark_deadline_stop(trial, f"after epoch {len(history)} of {cfg.epochs}", value, self.task.metric)
        except torch.OutOfMemoryError:
            del model
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            reason = f"out of memory on {self.device} (batch_size={cfg.batch_size})"
            self._record(trial, history, start, fail=reason)
            raise TrialFailedError(reason) from None
        except Exception as exc:  # a bug or an environment problem: recorded, then it stops the study
            self._record(trial, history, start, fail=f"{exc.__class__.__name__}: {exc}"[:500])
            raise
        self._record(trial, history, start)
        if self.costs.quantizable:  # --score: the quantized model's validation metric is the trial's value
            value = self.costs.score(trial, model, value)
        if not self._folds:  # a cross-validated trial has kept its refitted model already
            self._keep_if_best(trial, model, params, value, costs=costs)
        return [value, *costs] if self.objectives else value

    def _could_be_best(self, trial: optuna.Trial, value: float) -> bool:
        """Whether ``value`` beats every completed trial of this trial's model family (so also the
        study's best when it beats that): the leaderboard scores each family's best on the test split."""
        from automl.search.moo import first_value, maximizes

        family = str(trial.params.get("model", self.task.default_model))
        maximize = maximizes(trial.study)
        for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            tv = first_value(t)
            if tv is None or str(t.params.get("model", self.task.default_model)) != family:
                continue
            if not (value > tv if maximize else value < tv):
                return False
        return True

    def _fit_direct(self, trial: optuna.Trial, family: Any, params: dict[str, Any], seed: int) -> float:
        """A family fitted in one go (gradient-boosted trees): no epochs, so one record (``epoch`` 1)
        and one report. The value is the task's metric of the fitted *module* on the validation split,
        the number its exported file will give. A deadline is looked at between boosting chunks."""
        trial.set_user_attr("fit", "direct")
        history: list[dict[str, float]] = []
        start = time.perf_counter()
        cv_value: float | None = None
        try:
            with self.guard.training():
                if self._folds:
                    model, arch, cv_value = self._direct_folds(trial, family, params, seed, history, start)
                else:
                    model, arch = family.fit_direct(params, self.bundle, seed=seed, deadline=self.deadline)
        except KeyboardInterrupt:
            self._record(trial, history, start, fail="interrupted (Ctrl-C) during training")
            raise
        except optuna.TrialPruned as exc:
            self._record(trial, history, start, reason=str(exc), pruned_at=len(history))
            raise
        except DeadlineReached as exc:
            self._record(trial, history, start, reason=str(exc), pruned_at=0)
            raise optuna.TrialPruned(str(exc)) from None
        except ValueError as exc:
            self._record(trial, history, start, fail=f"cannot fit the model: {exc}"[:500])
            raise TrialFailedError(f"cannot fit the model: {exc}") from None
        except Exception as exc:
            self._record(trial, history, start, fail=f"{exc.__class__.__name__}: {exc}"[:500])
            raise
        if self.run.latency is not None:  # a tree ensemble has no shape before it is fitted: timed now
            reason = self.costs.over_latency_budget(trial, model, arch, fitted=True)
            if reason is not None:
                self._record(trial, history, start, reason=reason, pruned_at=0)
                raise optuna.TrialPruned(reason)
        bundle, loss_fn = self.bundle, self.task.loss_fn(0.0)
        model.to(self.device)
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("n_params", int(sum(b.numel() for b in model.buffers())))  # stored numbers
        if cv_value is not None:  # folds reported already; the refit (or last fold's) model is kept
            self._record(trial, history, start)
            costs = self.costs.measure(trial, model, params, arch)
            self._keep_if_best(trial, model, params, cv_value, arch, costs=costs, oof=self.direct_oof)
            return [cv_value, *costs] if self.objectives else cv_value
        # the training loss on at most DIRECT_TRAIN_ROWS rows: walking every tree costs like a prediction
        train_loss, _ = evaluate(model, bundle.x_train[:DIRECT_TRAIN_ROWS], bundle.y_train[:DIRECT_TRAIN_ROWS],
                                 loss_fn, self.metric_fn)
        val_loss, val_metric = evaluate(model, bundle.x_val, bundle.y_val, loss_fn, self.metric_fn)
        history.append({"epoch": 1, "train_loss": train_loss, "val_loss": val_loss, "val_metric": val_metric,
                        "seconds": time.perf_counter() - start})
        if not self.objectives:  # Optuna's trial.report refuses multi-objective studies
            with self.guard.critical():
                trial.report(val_metric, 1)
        # no observer.on_epoch: the budget watch times epochs of the epoch loop, which this fit has none of
        self._record(trial, history, start)
        costs = self.costs.measure(trial, model, params, arch)  # a fitted ensemble: after
        self._keep_if_best(trial, model, params, val_metric, arch, costs=costs)
        return [val_metric, *costs] if self.objectives else val_metric

    def _record(
        self, trial: optuna.Trial, history: list[dict[str, float]], start: float,
        reason: str | None = None, pruned_at: int | None = None, fail: str | None = None,
    ) -> None:
        trial.set_user_attr("epochs", len(history))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        trial.set_user_attr("history", [{k: round(float(v), 6) for k, v in r.items()} for r in history])
        if reason is not None:
            trial.set_user_attr("prune_reason", reason)
        if pruned_at is not None:
            trial.set_user_attr("pruned_at_epoch", int(pruned_at))
        if fail is not None:
            trial.set_user_attr("fail_reason", fail)

    def _keep_if_best(self, trial: optuna.Trial, model: torch.nn.Module, params: dict[str, Any], value: float,
                      arch: dict[str, Any] | None = None, costs: list[float] | None = None,
                      oof: Any = None) -> None:
        """Save this trial's weights while it could be the best of its model family (decided by the
        storage, not by a local variable, so concurrent workers agree), or, in a multi-objective study,
        while it would be on the Pareto front, or while it is an ensemble candidate
        (``automl.search.ensemble``: its validation predictions are kept too; ``oof``: the out-of-fold
        ones of a cross-validated trial, None when its folds did not all complete). ``arch``: the
        fitted module's, when the parameters alone do not give it (a tree ensemble)."""
        from automl.search.moo import could_join_front

        candidate = self._is_candidate(trial, value)
        if not candidate and not self._could_be_best(trial, value) and not (
                self.objectives and costs and could_join_front(trial.study, [value, *costs], trial.number)):
            return
        if candidate:  # before the weights: a kept checkpoint never lacks the predictions it was chosen on
            self._keep_predictions(trial.number, model, oof)
        save_checkpoint(
            trial_checkpoint_path(self.ckpt_dir, trial.number),
            {
                "trial": trial.number,
                "params": params,
                "arch": arch if arch is not None else self.task.arch_from_params(params, self.bundle.meta),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "value": float(value),
            },
        )

    def _is_candidate(self, trial: optuna.Trial, value: float) -> bool:
        """Whether the trial is an ensemble candidate (``automl.search.ensemble.would_be_candidate``,
        decided from the storage like ``_could_be_best``)."""
        from automl.search.ensemble import would_be_candidate
        from automl.search.moo import maximizes

        default = self.task.default_model
        done = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return would_be_candidate(done, value, str(trial.params.get("model", default)), maximizes(trial.study),
                                  lambda t: str(t.params.get("model", default)))

    def _keep_predictions(self, number: int, model: torch.nn.Module, oof: Any) -> None:
        """Write the candidate's validation predictions beside its weights (out-of-fold ones under
        --cv, where the kept model has seen the validation rows: none when ``oof`` is None)."""
        from automl.search.ensemble import as_predictions, predictions_path, save_predictions
        from automl.train import predict_logits

        path = predictions_path(self.ckpt_dir, number)
        if self._folds:
            if oof is None:
                path.unlink(missing_ok=True)
                return
            preds = oof
        else:
            with torch.no_grad():
                out = predict_logits(model, self.bundle.x_val)
            preds = as_predictions(out, regression=not self.task.metric_spec.labels)
        if not save_predictions(path, preds):
            path.unlink(missing_ok=True)
