"""Knowledge distillation for fine-tuning a pruned model: the unpruned model is the teacher.

The loss (Hinton et al. 2015) is ``weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))
+ (1 - weight) * task loss``; the T^2 keeps the soft term's gradients on the scale of the hard one.
The teacher sees exactly the batch the student sees (after augmentation): a wrapper module runs it
in its forward pass, so the search's training loop (``automl.train.fit``) is used unchanged. The
wrapper holds the teacher outside its registered modules, so the optimizer never sees its weights
and ``train()`` never switches it out of eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compress.checks import DEFAULT_TEMPERATURE, DEFAULT_WEIGHT, check_distill_args  # noqa: F401  (their old home)

if TYPE_CHECKING:
    from automl.data.bundle import DataBundle
    from automl.tasks import Task


def distill_unsupported(task: Task, bundle: DataBundle) -> str | None:
    """Why distillation does not apply to this task's data (``Task.distill_unsupported``; regression:
    no class distribution to soften), or None."""
    return task.distill_unsupported(bundle)


class Distilling(nn.Module):
    """``student`` in training, with ``teacher``'s logits of the same batch kept in ``teacher_logits``."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student = student
        self._teacher = [teacher.eval()]  # a list: not a registered submodule (no training, no optimizer)
        self.teacher_logits: torch.Tensor | None = None
        key_fn = getattr(student, "batch_size_key", None)
        if callable(key_fn):  # bucketing by length (text models) must see the student's rule
            self.batch_size_key = key_fn

    def to(self, *args: Any, **kwargs: Any) -> Distilling:
        self._teacher[0].to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.teacher_logits = self._teacher[0](x).detach()
        else:
            self.teacher_logits = None
        return self.student(x)


def distill_loss(wrapper: Distilling, task_loss: Callable, temperature: float, weight: float) -> Callable:
    """The loss ``fit`` calls as ``loss(student_logits, y)``: soft + hard in training, the task loss
    alone in evaluation (so validation figures stay comparable with plain fine-tuning)."""
    import torch.nn.functional as F

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hard = task_loss(logits, y)
        t = wrapper.teacher_logits
        if t is None or t.shape != logits.shape:
            return hard
        wrapper.teacher_logits = None  # one loss per forward pass
        s = F.log_softmax(logits.float() / temperature, dim=-1)
        p = F.log_softmax(t.float() / temperature, dim=-1)
        soft = F.kl_div(s, p, log_target=True, reduction="batchmean") * temperature**2
        return weight * soft + (1.0 - weight) * hard

    return loss
