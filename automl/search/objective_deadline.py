"""A trial stopped by the ``--timeout`` deadline is a result, not a loss (issue 22).

A trial still training at the deadline keeps the weights and the validation value of its last
completed epoch (with ``--cv``: the mean of its completed folds, the last completed fold's model)
and is finished as Optuna's COMPLETE with the user attribute ``stopped = "deadline"``. So the
samplers, ``study.best_trial``, the Pareto front, the leaderboard and best.pt treat it like any
completed trial, while ``automl trials``, the report and the search summary say it was cut short.
A trial stopped before its first epoch (or fold) ended has nothing to keep and is pruned, as is a
trial the trial pruner stops for being bad.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a model is copied: the CLI and trial listings import this module
    import optuna
    import torch
    from optuna.trial import FrozenTrial

#: the user attribute that marks a trial finished at the deadline, and its value
STOPPED_ATTR = "stopped"
DEADLINE = "deadline"
#: the user attribute holding the sentence that says where it was stopped
STOP_REASON_ATTR = "stop_reason"


class LastEpoch:
    """A copy of a model's weights at the end of its latest completed epoch.

    The deadline is looked at before every batch, so a stopped model is part-way through an epoch
    whose weights were never validated; this copy is what the recorded value belongs to. It is
    taken only when a deadline is set (one ``clone`` of the state dict per epoch, on the model's
    own device: a memory copy, small next to an epoch of training).
    """

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None

    def keep(self, model: torch.nn.Module) -> None:
        """Copy the model's weights (call after an epoch's validation)."""
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model: torch.nn.Module) -> bool:
        """Put the kept weights back into ``model``; False when no epoch was kept."""
        if self.state is None:
            return False
        model.load_state_dict(self.state)
        return True


def mark_deadline_stop(trial: optuna.Trial, where: str, value: float, metric: str) -> None:
    """Record on ``trial`` that the deadline stopped it ``where`` (e.g. "after epoch 3 of 300") and
    that it is kept with validation ``metric`` ``value``."""
    trial.set_user_attr(STOPPED_ATTR, DEADLINE)
    trial.set_user_attr(STOP_REASON_ATTR, f"stopped by the --timeout deadline {where}; kept with val {metric} "
                                          f"{value:.4f}")


def is_deadline_stopped(trial: FrozenTrial | optuna.Trial) -> bool:
    """True for a completed trial that the deadline cut short (kept at its last completed epoch)."""
    attrs = getattr(trial, "user_attrs", None) or {}
    return attrs.get(STOPPED_ATTR) == DEADLINE


def deadline_stopped_count(study: optuna.Study) -> int:
    """How many of the study's completed trials the deadline cut short."""
    from optuna.trial import TrialState

    return sum(is_deadline_stopped(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def cannot_catch_up(study: optuna.Study, trial_number: int, epoch: int, epochs: int, value: float, seconds: float,
                    deadline: float, now: float) -> str | None:
    """Why a trial should stop now because it cannot finish before the deadline and is behind (None:
    it goes on).

    A trial whose epochs (``seconds`` so far over ``epoch`` epochs) project its end past the
    ``deadline`` (both ``time.monotonic()`` values) will be stopped there and kept at its last epoch,
    having spent the rest of the budget on one network. That is worth it only for a promising one:
    this stops it when its ``value`` at this epoch is worse than the median of the study's completed
    trials at the same epoch (two needed). Unlike the trial pruner's this judgement may come on the
    first epoch: the question is the budget, not how a learning curve starts. A lone 40 s/epoch
    TabM at the majority-class accuracy took a 180 s tabular search from epoch 1 to its deadline."""
    over = now + (epochs - epoch) * seconds / epoch - deadline  # seconds its projected end is past the deadline
    if epoch >= epochs or over <= 0:
        return None
    import statistics

    import optuna

    if isinstance(study.pruner, optuna.pruners.NopPruner):  # --pruner none: the user wants no stopping
        return None
    peers = [t.intermediate_values[epoch] for t in study.get_trials(deepcopy=False, states=(
        optuna.trial.TrialState.COMPLETE,)) if t.number != trial_number and epoch in t.intermediate_values]
    if len(peers) < 2:
        return None
    median = statistics.median(peers)
    behind = value < median if study.direction == optuna.study.StudyDirection.MAXIMIZE else value > median
    if not behind:
        return None
    return (f"cannot finish its {epochs} epochs before the --timeout deadline ({over:.0f} s short) and is behind "
            f"the study's median at epoch {epoch} ({value:.4f} vs {median:.4f})")
