"""A study's trials as TensorBoard event files (``torch.utils.tensorboard``; TensorFlow is not needed):
``<DIR>/<study>/trial-<n>/`` holds the trial's scalars per epoch (``loss/train``, ``loss/val``,
``<metric>/val``, ``lr``) and, when it ends, its parameters as hparams with its value
(``hparam/<metric>``), so TensorBoard's HParams tab compares the trials."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial
    from torch.utils.tensorboard import SummaryWriter


def trial_dir(root: str | Path, study: str, number: int) -> Path:
    """Where trial ``number``'s event files go."""
    return Path(root) / study / f"trial-{number}"


def _hparam(value: Any) -> int | float | str | bool:
    """An hparam TensorBoard takes (numbers, strings, booleans); anything else as its text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardStudyLog:
    """One ``SummaryWriter`` per running trial of this process."""

    name = "TensorBoard"

    def __init__(self, root: str | Path, study: str, *, metric: str) -> None:
        self.root, self.study, self.metric = Path(root), study, metric
        self.writers: dict[int, SummaryWriter] = {}
        self.steps: dict[int, int] = {}
        self.root.mkdir(parents=True, exist_ok=True)

    def _writer(self, number: int) -> SummaryWriter:
        writer = self.writers.get(number)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            writer = self.writers[number] = SummaryWriter(log_dir=str(trial_dir(self.root, self.study, number)))
        return writer

    def trial_start(self, number: int, params: dict[str, Any]) -> None:
        self._writer(number)

    def epoch(self, number: int, record: dict[str, float]) -> None:
        step = self.steps.get(number, 0) + 1  # a running count: cross-validation restarts epochs per fold
        self.steps[number] = step
        self._scalars(self._writer(number), record, step)

    def _scalars(self, writer: SummaryWriter, record: dict[str, float], step: int) -> None:
        names = {"train_loss": "loss/train", "val_loss": "loss/val", "val_metric": f"{self.metric}/val", "lr": "lr"}
        for key, tag in names.items():
            value = record.get(key)
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                writer.add_scalar(tag, float(value), step)

    def trial_end(self, trial: FrozenTrial) -> None:
        writer = self._writer(trial.number)
        history = [r for r in trial.user_attrs.get("history") or [] if isinstance(r, dict)]
        logged = self.steps.pop(trial.number, 0)
        for step, record in enumerate(history[logged:], logged + 1):  # epochs not seen live (a direct fit)
            self._scalars(writer, record, step)
        value = trial.values[0] if trial.values else (history[-1].get("val_metric") if history else None)
        hparams = {k: _hparam(v) for k, v in trial.params.items()}
        hparams["state"] = trial.state.name
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            # run_name ".": the hparams go in the trial's own folder, beside its scalars
            writer.add_hparams(hparams, {f"hparam/{self.metric}": float(value)}, run_name=".")
        writer.close()
        self.writers.pop(trial.number, None)

    def finish(self, **_: Any) -> None:
        """Nothing study-wide to write."""

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
